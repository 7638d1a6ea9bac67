//! distribution 3.x's EC `kid`: the registry (`registry/auth/token/util.go`) derives an EC
//! key's thumbprint from its coordinates as big integers, without RFC 7638's left-padding
//! to the field size. For a P-256 key whose x or y starts with a zero byte (about one key
//! in 128) its `kid` differs from RFC 7638's, and a registry that looks the signing key up
//! by that `kid` (a certificate in `auth.token.rootcertbundle`, no `x5c`) refuses every
//! token. distribution 2.8 (libtrust `kid`s) and other registries are not affected.

use super::*;
use crate::token::alg::sha256;
use crate::wire::b64;

/// A signing key whose `kid` distribution 3.x derives differently (see the module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpaddedEcKid {
    /// The coordinates that start with a zero byte: `"x"`, `"y"` or `"x and y"`.
    pub coordinates: &'static str,
    /// The RFC 7638 thumbprint (this filter's derived `kid`).
    pub rfc7638: String,
    /// The thumbprint over the coordinates without their leading zero bytes (what
    /// distribution 3.x derives).
    pub unpadded: String,
}

impl PrivateKey {
    /// For an EC (P-256) signing key with a coordinate that starts with a zero byte: the
    /// two `kid`s that then differ. `None` for RSA keys and for every other EC key.
    pub fn distribution3_kid_advisory(&self) -> Option<UnpaddedEcKid> {
        let PrivateKeyKind::P256(key) = self.kind() else {
            return None;
        };
        let point = key.verifying_key().to_encoded_point(false);
        let (x, y) = (point.x()?, point.y()?);
        let coordinates = match (x.first() == Some(&0), y.first() == Some(&0)) {
            (false, false) => return None,
            (true, false) => "x",
            (false, true) => "y",
            (true, true) => "x and y",
        };
        let strip = |c: &[u8]| {
            let start = c.iter().position(|b| *b != 0).unwrap_or(c.len());
            b64::url_encode(&c[start..])
        };
        // RFC 7638's member order, as distribution writes it.
        let canonical = format!(
            "{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"{}\",\"y\":\"{}\"}}",
            strip(x),
            strip(y)
        );
        Some(UnpaddedEcKid {
            coordinates,
            rfc7638: self.public().thumbprint().to_owned(),
            unpadded: b64::url_encode(&sha256(canonical.as_bytes())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The P-256 signing key whose scalar is `d`.
    fn key_of(d: u16) -> PrivateKey {
        PrivateKey::from_p256(testkeys::p256_of_scalar(d)).unwrap()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The thumbprint of `{"crv","kty","x","y"}` over these coordinate bytes, computed here
    /// without the module's code.
    fn thumbprint(x: &[u8], y: &[u8]) -> String {
        let json = serde_json::json!({"crv": "P-256", "kty": "EC",
            "x": b64::url_encode(x), "y": b64::url_encode(y)});
        // serde_json writes object keys sorted: RFC 7638's order.
        b64::url_encode(&Sha256::digest(json.to_string().as_bytes()))
    }

    // 43·G: y = 00 3c cc … (31 significant bytes); 379·G: x = 00 55 43 … .
    const Y_43: &str = "003cccc0a6460e0ae328a4d97d3c7b61d86fc6289c189f2525110c441bb07e97";
    const X_43: &str = "986ae2506f1ff104d04230861d8f4b498f4bc4c6d009b30f7544dc129b82d28d";
    const X_379: &str = "005543894af3d00ed7d740abdbd75c96b06877b787db5f70eea78b90a8d7c00a";
    const Y_379: &str = "bb4c85a3d8ea29efaafa24406912dd84d5b14dc32bf656ef6c6bd58a5d943f92";

    #[test]
    fn a_leading_zero_y_gives_distributions_other_kid() {
        let key = key_of(43);
        let (x, y) = (unhex(X_43), unhex(Y_43));
        let advisory = key.distribution3_kid_advisory().unwrap();
        assert_eq!(advisory.coordinates, "y");
        assert_eq!(advisory.rfc7638, thumbprint(&x, &y));
        assert_eq!(advisory.rfc7638, key.public().thumbprint());
        assert_eq!(advisory.unpadded, thumbprint(&x, &y[1..]));
        assert_ne!(advisory.unpadded, advisory.rfc7638);
    }

    #[test]
    fn a_leading_zero_x_gives_distributions_other_kid() {
        let key = key_of(379);
        let (x, y) = (unhex(X_379), unhex(Y_379));
        let advisory = key.distribution3_kid_advisory().unwrap();
        assert_eq!(advisory.coordinates, "x");
        assert_eq!(advisory.rfc7638, thumbprint(&x, &y));
        assert_eq!(advisory.unpadded, thumbprint(&x[1..], &y));
    }

    #[test]
    fn keys_without_a_leading_zero_and_rsa_keys_need_no_advice() {
        // G itself: x = 6b 17 …, y = 4f e3 … .
        assert_eq!(key_of(1).distribution3_kid_advisory(), None);
        assert_eq!(key_of(2).distribution3_kid_advisory(), None);
        assert_eq!(
            testkeys::rsa_private().distribution3_kid_advisory(),
            None,
            "RSA thumbprints are unpadded integers anyway"
        );
    }

    #[test]
    fn random_keys_are_advised_exactly_when_a_coordinate_starts_with_zero() {
        let (mut advised, mut seen) = (0, 0);
        while advised < 2 {
            let key = testkeys::p256_private();
            let point = key.public().to_jwk();
            let (x, y) = (
                b64::url_decode(point["x"].as_str().unwrap()).unwrap(),
                b64::url_decode(point["y"].as_str().unwrap()).unwrap(),
            );
            let zero = x[0] == 0 || y[0] == 0;
            let advisory = key.distribution3_kid_advisory();
            assert_eq!(advisory.is_some(), zero, "x {x:02x?} y {y:02x?}");
            if let Some(a) = advisory {
                let strip = |c: &[u8]| c.iter().skip_while(|b| **b == 0).copied().collect();
                let (sx, sy): (Vec<u8>, Vec<u8>) = (strip(&x), strip(&y));
                assert_eq!(a.unpadded, thumbprint(&sx, &sy));
                advised += 1;
            }
            seen += 1;
            assert!(seen < 20_000, "two in 20,000 keys is far below one in 64");
        }
    }
}
