//! `factory-ca serve` (the default command) and `factory-ca migrate`.

use anyhow::Context;

use factory_ca::app::Application;
use factory_ca::config::Settings;
use factory_ca::services::tokens;
use factory_ca::store::Store;

/// Applies pending migrations and exits.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let store = Store::connect(&settings).await?;
    store.migrate().await?;
    eprintln!("migrations applied ({})", store.backend());
    Ok(())
}

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let store = app.state().store.clone();
    match tokens::create_bootstrap_admin(&store).await {
        Ok(Some(secret)) => eprintln!(
            "\n  First start: an admin token was created. It is shown only this once:\n\n    \
                 {}\n\n  Create a station token with it:\n    curl -H \"Authorization: Bearer <admin token>\" \
                 -H 'Content-Type: application/json' \\\n      -d '{{\"name\": \"line-1\", \"role\": \"station\"}}' \
                 {}://{}/v1/admin/tokens\n  or on this machine: factory-ca token create --role station --name line-1\n",
            secret.expose(),
            app.scheme(),
            app.state().settings.server.listen
        ),
        Ok(None) => {}
        Err(e) => return Err(e).context("cannot create the bootstrap admin token"),
    }
    let ca = app.state().issuance.issuing_ca();
    let settings = &app.state().settings;
    // Which AWS the service will call, so that an override that did not take is seen at once.
    let aws = if settings.aws.enabled {
        format!(
            "on, region {}, endpoint {}",
            settings.aws.region,
            settings
                .aws
                .endpoint_url
                .as_deref()
                .unwrap_or("AWS's default")
        )
    } else {
        "off (aws.enabled = false)".to_owned()
    };
    tracing::info!(
        listen = %settings.server.listen,
        port = app.port(),
        store = %factory_ca::store::describe_location(settings),
        issuing_ca = %ca.id(),
        aws = %aws,
        "factory-ca listening"
    );
    app.run_until_stopped().await
}
