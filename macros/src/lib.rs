//! `#[route(...)]`: the one declaration of an HTTP handler's OpenAPI operation in factory-ca.
//!
//! It takes what `#[utoipa::path(...)]` takes and writes that attribute over the handler,
//! filling in what the handler already says, so that it is not said twice:
//!
//! - `security`: from the role extractor in the handler's signature (`AdminCaller`,
//!   `ViewerCaller`, `StationCaller`, `AnyCaller` of `src/http/extract.rs`), which rejects a
//!   caller of another role before the handler runs. Its roles become the scopes of the
//!   operation's `bearer_token` requirement. A handler with a role extractor may not state
//!   `security` as well; a handler without one must state it (`security(())` for a public
//!   route), so that no route is documented as public by omission.
//! - `tag`: the constant `TAG` of the handler's module when the attribute names no tag.
//! - `operation_id`: utoipa already takes the handler's name when none is given.
//!
//! `like = other` declares a route documented as the handler `other` of the same module, above
//! it: `other`'s arguments as written there, each replaced by an argument of the same name
//! given here, and the arguments given here added (EST's labelled routes are documented as
//! their unlabelled ones, with another path, operation id and the label's parameter). Its
//! summary and description are its own doc comment's; `security` and `tag` are found as above.
//!
//! `src/http/extract.rs` checks with [`documented_roles!`] that the runtime role check of each
//! extractor admits exactly the roles written here.

use proc_macro::TokenStream;
use proc_macro2::{TokenStream as TokenStream2, TokenTree};
use quote::{ToTokens, quote};
use syn::{FnArg, Ident, ItemFn, Type};

/// The role extractors and the roles each admits (admin is admitted by every one).
const ROLE_EXTRACTORS: &[(&str, &[&str])] = &[
    ("AdminCaller", &["admin"]),
    ("ViewerCaller", &["viewer", "admin"]),
    ("StationCaller", &["station", "admin"]),
    ("AnyCaller", &["station", "viewer", "admin"]),
];

/// The security scheme of API tokens (`openapi::BEARER`).
const BEARER: &str = "bearer_token";

/// Declares a handler's OpenAPI operation: `#[utoipa::path(...)]` with `security` taken from
/// the role extractor and `tag` from the module's `TAG` (see the crate documentation).
#[proc_macro_attribute]
pub fn route(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The roles a role extractor admits, as an array of `&str`: `documented_roles!(AdminCaller)`
/// is `["admin"]`. For the test that compares them with the extractor's runtime check.
#[proc_macro]
pub fn documented_roles(input: TokenStream) -> TokenStream {
    let name = syn::parse_macro_input!(input as Ident);
    match roles_of(&name.to_string()) {
        Some(roles) => quote!([#(#roles),*]).into(),
        None => syn::Error::new(name.span(), "not a role extractor")
            .into_compile_error()
            .into(),
    }
}

fn roles_of(extractor: &str) -> Option<&'static [&'static str]> {
    ROLE_EXTRACTORS
        .iter()
        .find(|(name, _)| *name == extractor)
        .map(|(_, roles)| *roles)
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let handler: ItemFn = syn::parse2(item)?;
    let args = split_arguments(attr);
    if let Some(base) = like_of(&args)? {
        // `base`'s macro (written with its route, below) writes `#[route]` again with `base`'s
        // arguments in `__like(...)`, which `with_like_merged` then merges with ours.
        let overrides = args.iter().filter(|a| !has_key(a, "like"));
        let like = like_macro(&base);
        return Ok(quote! {
            #like! { [#(#overrides),*] #handler }
        });
    }
    let written = with_like_merged(args)?;
    let like = like_macro(&handler.sig.ident);
    let mut args = written.clone();
    let security = args.iter().find(|a| has_key(a, "security"));
    match (role_extractor(&handler)?, security) {
        (Some((extractor, _)), Some(security)) => {
            return Err(syn::Error::new_spanned(
                security,
                format!(
                    "the role extractor `{extractor}` already states who may call this route; \
                     remove `security`"
                ),
            ));
        }
        (Some((_, roles)), None) => args.push(quote!(security((#BEARER = [#(#roles),*])))),
        (None, Some(_)) => {}
        (None, None) => {
            return Err(syn::Error::new(
                handler.sig.ident.span(),
                "who may call this route? Take a role extractor (AdminCaller, ViewerCaller, \
                 StationCaller, AnyCaller), or state `security(...)`: `security(())` for a \
                 public route",
            ));
        }
    }
    if !args.iter().any(|a| has_key(a, "tag")) {
        args.push(quote!(tag = TAG));
    }
    Ok(quote! {
        // For a route declared `like = <this handler>`: this route's arguments as written.
        #[allow(unused_macros)]
        macro_rules! #like {
            ([$($overrides:tt)*] $($handler:tt)*) => {
                #[route(__like(#(#written),*), $($overrides)*)]
                $($handler)*
            };
        }
        #[utoipa::path(#(#args),*)]
        #handler
    })
}

/// The macro that declares a route `like = handler`.
fn like_macro(handler: &Ident) -> Ident {
    quote::format_ident!("__route_like_{}", handler)
}

/// The handler named by `like = handler`, if an argument says so.
fn like_of(args: &[TokenStream2]) -> syn::Result<Option<Ident>> {
    let Some(like) = args.iter().find(|a| has_key(a, "like")) else {
        return Ok(None);
    };
    let mut tokens = like.clone().into_iter().skip(1);
    match (tokens.next(), tokens.next(), tokens.next()) {
        (Some(TokenTree::Punct(eq)), Some(TokenTree::Ident(handler)), None)
            if eq.as_char() == '=' =>
        {
            Ok(Some(handler))
        }
        _ => Err(syn::Error::new_spanned(
            like,
            "write `like = handler`: a handler with `#[route]` above this one in this module",
        )),
    }
}

/// The arguments of a route declared `like` another: the other's (in `__like(...)`, first),
/// less those named again here, then these. Arguments without `__like(...)` as they are.
fn with_like_merged(mut args: Vec<TokenStream2>) -> syn::Result<Vec<TokenStream2>> {
    if !args.first().is_some_and(|a| has_key(a, "__like")) {
        return Ok(args);
    }
    let like = args.remove(0);
    let Some(TokenTree::Group(base)) = like.into_iter().nth(1) else {
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "`__like` takes the arguments of a route in parentheses",
        ));
    };
    let keys: Vec<String> = args.iter().filter_map(key_of).collect();
    let mut merged: Vec<TokenStream2> = split_arguments(base.stream())
        .into_iter()
        .filter(|a| key_of(a).is_none_or(|k| !keys.contains(&k)))
        .collect();
    merged.extend(args);
    Ok(merged)
}

/// Whether an argument starts with the name `key`.
fn has_key(arg: &TokenStream2, key: &str) -> bool {
    key_of(arg).is_some_and(|k| k == key)
}

/// The attribute's arguments, split at the commas between them (a comma inside parentheses,
/// brackets or a string belongs to its argument).
fn split_arguments(attr: TokenStream2) -> Vec<TokenStream2> {
    let mut args = vec![TokenStream2::new()];
    for tree in attr {
        match &tree {
            TokenTree::Punct(p) if p.as_char() == ',' => args.push(TokenStream2::new()),
            _ => args.last_mut().expect("never empty").extend([tree]),
        }
    }
    args.retain(|a| !a.is_empty());
    args
}

/// The name an argument starts with: `security` of `security(())`, `tag` of `tag = "x"`.
fn key_of(arg: &TokenStream2) -> Option<String> {
    match arg.clone().into_iter().next()? {
        TokenTree::Ident(ident) => Some(ident.to_string()),
        _ => None,
    }
}

/// The role extractor among the handler's arguments, with its roles. Only an argument of the
/// extractor type itself counts: a `Result<AdminCaller, _>` lets the handler run for callers
/// the extractor refused, so its roles are not the route's.
fn role_extractor(handler: &ItemFn) -> syn::Result<Option<(String, &'static [&'static str])>> {
    let mut found: Option<(String, &'static [&'static str])> = None;
    for input in &handler.sig.inputs {
        let FnArg::Typed(argument) = input else {
            continue;
        };
        let Type::Path(path) = &*argument.ty else {
            continue;
        };
        let Some(last) = path.path.segments.last() else {
            continue;
        };
        let name = last.ident.to_string();
        let Some(roles) = roles_of(&name) else {
            continue;
        };
        if let Some((first, _)) = &found {
            return Err(syn::Error::new_spanned(
                argument.to_token_stream(),
                format!("a second role extractor (`{first}` is already one); take one"),
            ));
        }
        found = Some((name, roles));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(attr: &str, item: &str) -> String {
        expand(attr.parse().unwrap(), item.parse().unwrap())
            .map(|tokens| tokens.to_string())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    fn utoipa_args(attr: &str, item: &str) -> String {
        let out = expanded(attr, item);
        let start = out.find("# [utoipa :: path (").expect(&out) + "# [utoipa :: path (".len();
        let end = out.find(")] pub async fn").expect(&out);
        out[start..end].trim().to_owned()
    }

    #[test]
    fn states_the_roles_of_the_role_extractor_as_bearer_scopes() {
        for (extractor, scopes) in [
            ("AdminCaller", r#"["admin"]"#),
            ("ViewerCaller", r#"["viewer" , "admin"]"#),
            ("StationCaller", r#"["station" , "admin"]"#),
            ("AnyCaller", r#"["station" , "viewer" , "admin"]"#),
        ] {
            let item = format!(
                "pub async fn list(State(state): State<AppState>, _caller: {extractor}) {{}}"
            );
            assert_eq!(
                utoipa_args(r#"get, path = "/v1/x""#, &item),
                format!(
                    r#"get , path = "/v1/x" , security (("bearer_token" = {scopes})) , tag = TAG"#
                ),
                "{extractor}"
            );
        }
    }

    #[test]
    fn finds_the_extractor_by_its_path_at_any_position() {
        let item = "pub async fn get(State(s): State<AppState>, ApiPath(id): ApiPath<String>, \
                    a: crate::http::extract::AdminCaller) {}";
        assert!(utoipa_args("get", item).contains(r#"security (("bearer_token" = ["admin"]))"#));
    }

    #[test]
    fn keeps_a_stated_tag_and_every_other_argument_as_written() {
        let attr = r#"post, path = "/v1/x/{id}", tag = "ledger", operation_id = "make_x",
            params(("id" = String, Path, description = "An id, or two")),
            request_body = NewX, responses((status = 201, description = "Made", body = X))"#;
        let item = "pub async fn make(admin: AdminCaller) {}";
        let args = utoipa_args(attr, item);
        assert!(args.starts_with(
            r#"post , path = "/v1/x/{id}" , tag = "ledger" , operation_id = "make_x" , params"#
        ));
        assert!(args.contains(r#"description = "An id, or two""#), "{args}");
        assert!(
            args.ends_with(r#"security (("bearer_token" = ["admin"]))"#),
            "{args}"
        );
        assert!(!args.contains("TAG"), "{args}");
    }

    #[test]
    fn keeps_the_stated_security_of_a_route_without_role_extractor() {
        let item = "pub async fn healthz() -> Json<Value> {}";
        assert_eq!(
            utoipa_args(r#"get, path = "/healthz", security(())"#, item),
            r#"get , path = "/healthz" , security (()) , tag = TAG"#
        );
        let item = "pub async fn sign(caller: Result<AdminCaller, ApiError>) {}";
        let attr = r#"post, security(("bearer_token" = ["station", "admin"]))"#;
        assert!(utoipa_args(attr, item).contains(r#"["station" , "admin"]"#));
    }

    #[test]
    fn keeps_the_handler_with_its_documentation() {
        let item = "/// Lists things\n///\n/// Newest first.\npub async fn list(_v: ViewerCaller) \
                    -> Json<Page> { Json(page()) }";
        let out = expanded("get", item);
        assert!(out.contains(r#"# [doc = " Lists things"]"#), "{out}");
        assert!(
            out.ends_with(
                "pub async fn list (_v : ViewerCaller) -> Json < Page > { Json (page ()) }"
            ),
            "{out}"
        );
    }

    #[test]
    fn refuses_a_route_that_says_nothing_of_who_may_call_it() {
        let out = expanded("get", "pub async fn open(State(s): State<AppState>) {}");
        assert!(out.starts_with("error: who may call this route?"), "{out}");
    }

    #[test]
    fn refuses_roles_stated_twice() {
        let out = expanded(
            r#"get, security(("bearer_token" = ["admin"]))"#,
            "pub async fn list(_admin: AdminCaller) {}",
        );
        assert!(
            out.contains("`AdminCaller` already states who may call"),
            "{out}"
        );
    }

    #[test]
    fn refuses_two_role_extractors() {
        let out = expanded(
            "get",
            "pub async fn list(_a: AdminCaller, _v: ViewerCaller) {}",
        );
        assert!(
            out.contains("a second role extractor (`AdminCaller`"),
            "{out}"
        );
    }

    #[test]
    fn writes_beside_each_route_the_macro_of_the_routes_declared_like_it() {
        let out = expanded(
            r#"get, path = "/est/cacerts", security(())"#,
            "pub async fn cacerts() {}",
        );
        assert!(
            out.starts_with(
                "# [allow (unused_macros)] macro_rules ! __route_like_cacerts { \
                 ([$ ($ overrides : tt) *] $ ($ handler : tt) *) => { \
                 # [route (__like (get , path = \"/est/cacerts\" , security (())) , \
                 $ ($ overrides) *)] $ ($ handler) * } ; }"
            ),
            "{out}"
        );
    }

    #[test]
    fn hands_a_route_declared_like_another_to_the_others_macro() {
        let out = expanded(
            r#"like = cacerts, path = "/est/{label}/cacerts", operation_id = "est_cacerts_labelled""#,
            "/// Labelled\npub async fn cacerts_labelled() {}",
        );
        assert_eq!(
            out,
            "__route_like_cacerts ! { [path = \"/est/{label}/cacerts\" , \
             operation_id = \"est_cacerts_labelled\"] # [doc = \" Labelled\"] \
             pub async fn cacerts_labelled () { } }"
        );
    }

    #[test]
    fn replaces_the_arguments_named_again_and_keeps_the_others_of_the_route_it_is_like() {
        let attr = r#"__like(get, path = "/est/cacerts", operation_id = "est_cacerts",
                responses((status = 200, description = "CMS", body = String)), security(())),
            path = "/est/{label}/cacerts", operation_id = "est_cacerts_labelled",
            params(("label" = String, Path, description = "A label"))"#;
        assert_eq!(
            utoipa_args(attr, "pub async fn cacerts_labelled(label: String) {}"),
            r#"get , responses ((status = 200 , description = "CMS" , body = String)) , security (()) , path = "/est/{label}/cacerts" , operation_id = "est_cacerts_labelled" , params (("label" = String , Path , description = "A label")) , tag = TAG"#
        );
    }

    #[test]
    fn finds_security_in_the_signature_of_a_route_declared_like_another() {
        let attr = r#"__like(get, path = "/v1/x"), path = "/v1/y""#;
        assert_eq!(
            utoipa_args(attr, "pub async fn y(_a: AdminCaller) {}"),
            r#"get , path = "/v1/y" , security (("bearer_token" = ["admin"])) , tag = TAG"#
        );
        let out = expanded(
            r#"__like(get, security(())), path = "/v1/y""#,
            "pub async fn y(_a: AdminCaller) {}",
        );
        assert!(
            out.contains("`AdminCaller` already states who may call"),
            "{out}"
        );
    }

    #[test]
    fn refuses_like_without_a_handler_name() {
        for like in [r#"like = "cacerts""#, "like", "like = a b"] {
            let out = expanded(like, "pub async fn b() {}");
            assert!(
                out.starts_with("error: write `like = handler`"),
                "{like}: {out}"
            );
        }
    }

    #[test]
    fn documented_roles_of_an_unknown_type_is_none() {
        assert_eq!(roles_of("AdminCaller"), Some(&["admin"][..]));
        assert_eq!(roles_of("Caller"), None);
    }
}
