//! `decodingStrategy`, as ESO's `decoding.Decode` applies it to every value read: Go's
//! `encoding/base64`, whose decoders ignore `\r` and `\n`, require canonical `=` padding (so
//! `Base64URL` refuses unpadded input, unlike most URL-safe decoders) and accept non-zero
//! trailing bits. `Auto` tries Base64, then Base64URL, and keeps the value as it is when
//! neither decodes.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const GO: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_allow_trailing_bits(true)
    .with_decode_padding_mode(DecodePaddingMode::RequireCanonical);
const STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, GO);
const URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, GO);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decoding {
    #[default]
    None,
    Base64,
    Base64Url,
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodingError {
    #[error("decoding strategy {0:?} is not one of None, Base64, Base64URL, Auto")]
    UnknownStrategy(String),
    /// Names the key whose value could not be decoded, never the value.
    #[error("failure decoding key {key}: the value is not valid {strategy}")]
    Invalid { key: String, strategy: &'static str },
}

impl Decoding {
    /// The strategy a `decodingStrategy` field names (absent or empty: `None`).
    pub fn parse(strategy: Option<&str>) -> Result<Self, DecodingError> {
        match strategy.unwrap_or_default() {
            "" | "None" => Ok(Decoding::None),
            "Base64" => Ok(Decoding::Base64),
            "Base64URL" => Ok(Decoding::Base64Url),
            "Auto" => Ok(Decoding::Auto),
            other => Err(DecodingError::UnknownStrategy(other.to_owned())),
        }
    }

    /// Decodes the value of Secret key `key` (named in the error).
    pub fn decode(self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, DecodingError> {
        let invalid = |strategy| DecodingError::Invalid {
            key: key.to_owned(),
            strategy,
        };
        match self {
            Decoding::None => Ok(value),
            Decoding::Base64 => go_decode(&STD, &value).ok_or_else(|| invalid("base64")),
            Decoding::Base64Url => go_decode(&URL, &value).ok_or_else(|| invalid("base64url")),
            Decoding::Auto => Ok(go_decode(&STD, &value)
                .or_else(|| go_decode(&URL, &value))
                .unwrap_or(value)),
        }
    }
}

fn go_decode(engine: &GeneralPurpose, value: &[u8]) -> Option<Vec<u8>> {
    if value.contains(&b'\n') || value.contains(&b'\r') {
        let stripped: Vec<u8> = value
            .iter()
            .copied()
            .filter(|b| *b != b'\n' && *b != b'\r')
            .collect();
        return engine.decode(stripped).ok();
    }
    engine.decode(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(strategy: &str, value: &str) -> Result<Vec<u8>, DecodingError> {
        Decoding::parse(Some(strategy))?.decode("k", value.as_bytes().to_vec())
    }

    #[test]
    fn strategies_follow_go_base64() {
        assert_eq!(decode("Base64", "aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode("Base64", "aGVs\nbG8=\r\n").unwrap(), b"hello");
        assert!(decode("Base64", "aGVsbG8").is_err(), "padding is required");
        assert!(decode("Base64", "_-8=").is_err());
        assert_eq!(decode("Base64URL", "_-8=").unwrap(), [0xff, 0xef]);
        assert!(decode("Base64URL", "_-8").is_err(), "padding is required");
        assert_eq!(decode("Base64", "aGk=").unwrap(), b"hi");
        assert_eq!(decode("Base64", "aGl=").unwrap(), b"hi", "trailing bits");
        assert_eq!(decode("None", "aGk=").unwrap(), b"aGk=");
        assert_eq!(decode("", "aGk=").unwrap(), b"aGk=");
    }

    #[test]
    fn auto_falls_back_to_the_value() {
        assert_eq!(decode("Auto", "aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode("Auto", "_-8=").unwrap(), [0xff, 0xef]);
        assert_eq!(decode("Auto", "not base64!").unwrap(), b"not base64!");
    }

    #[test]
    fn errors_name_the_key_not_the_value() {
        let error = Decoding::Base64
            .decode("password", b"s3cr3t!".to_vec())
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "failure decoding key password: the value is not valid base64"
        );
        assert!(Decoding::parse(Some("Hex")).is_err());
    }
}
