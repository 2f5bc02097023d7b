//! The values the store keeps in text columns, as types: each is written and read as its stable
//! name (the same name the API shows), on PostgreSQL (`text`) and SQLite (`TEXT`) alike, and a
//! value the code does not know fails the read instead of travelling on as a string.
//!
//! Types of other layers that the store persists (the CA core's revocation reason, AWS IoT's
//! statuses and certificate mode) get their column encoding here too, so that those layers need
//! no SQL.

use serde::{Deserialize, Serialize};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

use crate::aws::{AwsCertificateStatus, CaStatus, CertificateMode};
use crate::ca::{KeyAlgorithm, RevocationReason};

/// A value stored as one of a fixed set of names.
pub trait TextValue: Sized + Copy + 'static {
    /// Every value, in a stable order.
    const ALL: &'static [Self];
    /// Its stored (and API) name.
    fn name(self) -> &'static str;
    /// The value with this name.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }
}

/// A value with a text form in its column: the [`TextValue`]s, and key algorithms
/// (`rsa-<bits>` is not a fixed set).
pub trait ColumnText: Sized {
    fn to_text(&self) -> std::borrow::Cow<'static, str>;
    fn from_text(text: &str) -> Option<Self>;
}

impl<T: TextValue> ColumnText for T {
    fn to_text(&self) -> std::borrow::Cow<'static, str> {
        self.name().into()
    }
    fn from_text(text: &str) -> Option<Self> {
        T::from_name(text)
    }
}

impl ColumnText for KeyAlgorithm {
    fn to_text(&self) -> std::borrow::Cow<'static, str> {
        self.name().into()
    }
    fn from_text(text: &str) -> Option<Self> {
        KeyAlgorithm::parse(text)
    }
}

/// Column encoding of [`ColumnText`] values, for every backend that stores text.
macro_rules! text_columns {
    ($($ty:ty),* $(,)?) => {$(
        impl<DB: Database> Type<DB> for $ty
        where
            str: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $ty
        where
            String: Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                <String as Encode<DB>>::encode(ColumnText::to_text(self).into_owned(), buf)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $ty
        where
            &'r str: Decode<'r, DB>,
        {
            fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let name = <&str as Decode<DB>>::decode(value)?;
                <$ty as ColumnText>::from_text(name).ok_or_else(|| {
                    format!("unknown {} {name:?} in the store", stringify!($ty)).into()
                })
            }
        }
    )*};
}

/// [`TextValue`] and `Display` for an enum from its variants and their stored names, written
/// once.
macro_rules! text_value {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl TextValue for $ty {
            const ALL: &'static [Self] = &[$($ty::$variant),+];
            fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// What a token may do. `admin` may do everything a viewer may; only `station` and `admin`
/// may sign.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Station,
    Viewer,
    Admin,
}

text_value!(Role {
    Station => "station",
    Viewer => "viewer",
    Admin => "admin",
});

impl Role {
    pub fn as_str(self) -> &'static str {
        self.name()
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::from_name(s)
    }
}

/// Where a ledger row stands: `active` until revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LedgerStatus {
    Active,
    Revoked,
    /// Renewed by its device (EST simplereenroll): the certificate named in `superseded_by`
    /// took over its thing claim. Not revoked: it stays valid until it expires or is revoked.
    Superseded,
}

text_value!(LedgerStatus {
    Active => "active",
    Revoked => "revoked",
    Superseded => "superseded",
});

/// The interface a certificate was requested through: the JSON API (`POST /v1/certificates`)
/// or EST (`/.well-known/est/...`, RFC 7030). Shown in the ledger row as `channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Api,
    Est,
}

text_value!(Channel {
    Api => "api",
    Est => "est",
});

/// How a JITP template is attached to a CA in AWS IoT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    /// `registrationConfig {templateBody, roleArn}` on the CA.
    Inline,
    /// A JITP provisioning template, referenced by `registrationConfig {templateName}`.
    Named,
}

text_value!(TemplateKind {
    Inline => "inline",
    Named => "named",
});

impl TextValue for RevocationReason {
    const ALL: &'static [Self] = &RevocationReason::ALL;
    fn name(self) -> &'static str {
        RevocationReason::name(self)
    }
}

impl TextValue for CertificateMode {
    const ALL: &'static [Self] = &[CertificateMode::Default, CertificateMode::SniOnly];
    fn name(self) -> &'static str {
        match self {
            CertificateMode::Default => "default",
            CertificateMode::SniOnly => "sni_only",
        }
    }
}

impl TextValue for CaStatus {
    const ALL: &'static [Self] = CaStatus::ALL;
    fn name(self) -> &'static str {
        self.as_aws()
    }
}

impl TextValue for AwsCertificateStatus {
    const ALL: &'static [Self] = AwsCertificateStatus::ALL;
    fn name(self) -> &'static str {
        self.as_aws()
    }
}

text_columns!(
    KeyAlgorithm,
    Role,
    LedgerStatus,
    Channel,
    TemplateKind,
    RevocationReason,
    CertificateMode,
    CaStatus,
    AwsCertificateStatus,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: TextValue + PartialEq + std::fmt::Debug>() {
        let mut names = std::collections::BTreeSet::new();
        for value in T::ALL {
            assert_eq!(T::from_name(value.name()), Some(*value));
            assert!(names.insert(value.name()), "{} twice", value.name());
        }
        assert_eq!(T::from_name("no such value"), None);
    }

    #[test]
    fn every_stored_name_reads_back_as_its_value() {
        round_trips::<Role>();
        round_trips::<LedgerStatus>();
        round_trips::<TemplateKind>();
        round_trips::<RevocationReason>();
        round_trips::<CertificateMode>();
        round_trips::<CaStatus>();
        round_trips::<AwsCertificateStatus>();
    }

    #[test]
    fn key_algorithms_read_back_from_their_names_only() {
        for name in [
            "ecdsa-p256",
            "ecdsa-p384",
            "ecdsa-p521",
            "rsa-2048",
            "rsa-3072",
            "rsa-8192",
        ] {
            let key = KeyAlgorithm::from_text(name).unwrap();
            assert_eq!(key.to_text(), name);
            assert_eq!(serde_json::to_value(key).unwrap(), name);
        }
        for name in ["", "rsa-", "rsa-02048", "rsa-x", "ecdsa-p999", "RSA-2048"] {
            assert_eq!(KeyAlgorithm::from_text(name), None, "{name}");
        }
    }

    #[test]
    fn stored_names_are_the_serde_names() {
        for role in Role::ALL {
            assert_eq!(serde_json::to_value(role).unwrap(), role.name());
        }
        for status in LedgerStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.name());
        }
        for kind in TemplateKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
        for mode in <CertificateMode as TextValue>::ALL {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.name());
        }
    }
}
