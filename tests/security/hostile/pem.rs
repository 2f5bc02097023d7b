//! PEM framing: a CSR is exactly one `CERTIFICATE REQUEST` block of base64 DER, nothing
//! before it and nothing after it.

use super::*;
use crate::on_both_backends;

on_both_backends!(text_that_is_not_one_certificate_request_block_is_invalid_csr);

async fn text_that_is_not_one_certificate_request_block_is_invalid_csr(backend: Backend) {
    refuses_each_csr(backend, &NOT_ONE_REQUEST_BLOCK).await;
}

pub(super) static NOT_ONE_REQUEST_BLOCK: Table = Table::new(not_one_request_block);

fn not_one_request_block() -> Vec<Case> {
    let good = good();
    let invalid = |name: &str, body: Body| case(name, body, BAD, "invalid_csr");
    let mut cases = vec![
        invalid(
            "PEM with characters outside base64",
            json_csr(
                "-----BEGIN CERTIFICATE REQUEST-----\n!!not*base64$$\n-----END CERTIFICATE REQUEST-----\n",
            ),
        ),
        invalid(
            "PEM whose base64 decodes to garbage",
            json_csr(&pem(&filler(300, 3))),
        ),
        invalid(
            "PEM without its END line",
            json_csr(&good.pem[..good.pem.find("-----END").unwrap()]),
        ),
        invalid(
            "PEM cut after the BEGIN line",
            json_csr("-----BEGIN CERTIFICATE REQUEST-----\n"),
        ),
        invalid(
            "PEM with mismatched END label",
            json_csr(
                &good
                    .pem
                    .replace("END CERTIFICATE REQUEST", "END CERTIFICATE"),
            ),
        ),
    ];
    for label in [
        "CERTIFICATE",
        "PRIVATE KEY",
        "X509 CRL",
        "PKCS7",
        "certificate request",
    ] {
        cases.push(invalid(
            &format!("PEM labelled {label}"),
            json_csr(&good.pem.replace("CERTIFICATE REQUEST", label)),
        ));
    }
    cases.extend([
        invalid(
            "PEM followed by a private key block",
            json_csr(&format!(
                "{}{}",
                good.pem,
                factory_ca::ca::to_pem("PRIVATE KEY", &good.key.serialize_der())
            )),
        ),
        invalid(
            "text before the PEM block",
            json_csr(&format!("hello\n{}", good.pem)),
        ),
        invalid(
            "PEM with invalid UTF-8",
            Body::Raw(
                PKCS10,
                [
                    b"-----BEGIN CERTIFICATE REQUEST-----\n\xff\xfe".as_slice(),
                    good.pem.lines().nth(1).unwrap().as_bytes(),
                    b"\n-----END CERTIFICATE REQUEST-----\n",
                ]
                .concat(),
            ),
        ),
    ]);
    cases
}
