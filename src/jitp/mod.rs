//! JITP provisioning templates: the `registrationConfig` factory-ca attaches to a CA in AWS IoT.
//!
//! A template request ([`TemplateSpec`]) is a raw template body, a "simple" description that
//! [`build_simple`] turns into a body, or the name of a JITP template that already exists in AWS.
//! Every body we send goes through [`validate`], which holds it to what JITP can evaluate
//! (AWS IoT developer guide, "Just-in-time provisioning" and "Provisioning templates"):
//!
//! - JITP supplies only the eight `AWS::IoT::Certificate::*` parameters ([`CertificateField`]),
//!   taken from the subject of the connecting certificate plus the certificate ID AWS computes.
//!   So `Parameters` may declare only those, each `{"Type": "String"}`.
//! - Provisioning fails when the certificate lacks a field the template declares. We therefore
//!   refuse a declared parameter that nothing uses (it could only make devices fail) and a
//!   `Default` (the JITP guide says the certificate must carry every declared field, so a default
//!   is not a fallback we can rely on). As a result the declared fields are exactly
//!   [`ValidatedTemplate::referenced_fields`], which the preflight checks against the issuance
//!   policy.
//! - A `Ref` may name only a declared parameter. The guide documents no value for a resource's
//!   logical name, so a `Ref` to a resource is refused rather than guessed.
//! - Resources are one `AWS::IoT::Thing` (named from the certificate), one
//!   `AWS::IoT::Certificate` whose `CertificateId` is `{"Ref": "AWS::IoT::Certificate::Id"}`
//!   (JITP registers the certificate the device connected with), and any number of
//!   `AWS::IoT::Policy`.
//! - Of the intrinsic functions, only `Fn::Join` is accepted. The guide documents the others
//!   (`Fn::Select`, `Fn::Split`, `Fn::Sub`, `Fn::FindInMap`) for fleet provisioning templates,
//!   and we evaluate every template in [`preview`], so we accept only what we can evaluate.
//!
//! [`preview`] evaluates a validated template for one certificate subject, so an admin sees the
//! thing a device would become before the device connects.
//!
//! Pure: serde_json values in and out. No HTTP, SQL or AWS SDK types.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

mod aws_rules;
mod error;
mod fields;
#[cfg(test)]
mod fixtures;
mod preview;
mod spec;
mod validate;

pub use aws_rules::*;
pub use error::*;
pub use fields::*;
pub use preview::*;
pub use spec::*;
pub use validate::*;

/// AWS accepts a `templateBody` of at most 10240 characters (API reference,
/// `RegistrationConfig` and `CreateProvisioningTemplate`).
pub const MAX_TEMPLATE_BODY_LEN: usize = 10240;

/// A thing without a thing type may have 3 attributes, a thing with one 50
/// (AWS IoT developer guide, "Thing types").
pub const MAX_ATTRIBUTES_UNTYPED: usize = 3;
/// See [`MAX_ATTRIBUTES_UNTYPED`].
pub const MAX_ATTRIBUTES_TYPED: usize = 50;

const TYPE_THING: &str = "AWS::IoT::Thing";
const TYPE_CERTIFICATE: &str = "AWS::IoT::Certificate";
const TYPE_POLICY: &str = "AWS::IoT::Policy";

const PARAMETER_LIST: &str = "AWS::IoT::Certificate::CommonName, AWS::IoT::Certificate::Country, \
     AWS::IoT::Certificate::Organization, AWS::IoT::Certificate::OrganizationalUnit, \
     AWS::IoT::Certificate::DistinguishedNameQualifier, AWS::IoT::Certificate::StateName, \
     AWS::IoT::Certificate::SerialNumber, AWS::IoT::Certificate::Id";
