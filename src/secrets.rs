//! Secret values and how they may be shown: access key ids as their first and last four
//! characters, secret keys, session tokens and external ids never; and values that look like
//! one of those, quoted in an error message, as a short prefix only.
//!
//! Every secret kinship holds is registered here (from the config, the environment and each
//! credentials provider as it refreshes) so that the logging set-up can mask it in every line,
//! whatever a dependency chose to print.

use std::borrow::Cow;
use std::sync::{LazyLock, RwLock};

use aho_corasick::AhoCorasick;
use regex::{Captures, Regex};

/// What an access key id is shown as: its kind (`AKIA`, `ASIA`, …) and its last four.
const KEY_ID_SHOWN_CHARS: usize = 4;
/// What a masked secret is shown as.
pub const MASK: &str = "<redacted>";
/// Values shorter than this are not masked in logs: masking `abc` would mask every `abc`.
/// Real keys, secrets and tokens are far longer.
const MIN_MASKED_LEN: usize = 8;
/// A value this long or longer, made of token characters, is quoted as a prefix in messages
/// (secret access keys have 40 characters, session tokens hundreds; access key ids are
/// recognised by their own shape).
const MIN_SECRET_LIKE_LEN: usize = 20;

/// Whether `value` has the shape of an AWS access key id: four capital letters naming its kind,
/// then capital letters and digits, 16 to 128 characters in all.
pub fn looks_like_access_key_id(value: &str) -> bool {
    let bytes = value.as_bytes();
    (16..=128).contains(&bytes.len())
        && bytes[..4].iter().all(u8::is_ascii_uppercase)
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit())
        && bytes.iter().any(u8::is_ascii_digit)
}

/// Whether `value` could be a key, a secret or a token: an access key id, or a long run of
/// base64 or token characters mixing capitals, small letters and digits (as every secret
/// access key and session token does). URLs, paths, names with spaces and words do not.
pub fn looks_like_secret(value: &str) -> bool {
    if looks_like_access_key_id(value) {
        return true;
    }
    let bytes = value.as_bytes();
    if bytes.len() < MIN_SECRET_LIKE_LEN {
        return false;
    }
    let token_chars = bytes
        .iter()
        .all(|byte| byte.is_ascii_alphanumeric() || b"/+=_-".contains(byte));
    let has_upper = bytes.iter().any(u8::is_ascii_uppercase);
    let has_lower = bytes.iter().any(u8::is_ascii_lowercase);
    let has_digit = bytes.iter().any(u8::is_ascii_digit);
    token_chars && has_upper && has_lower && has_digit
}

/// `value` as an error message may quote it: whole, unless it looks like a secret; then its
/// first four characters and its length.
pub fn quoted(value: &str) -> Cow<'_, str> {
    if looks_like_secret(value) {
        let head: String = value.chars().take(KEY_ID_SHOWN_CHARS).collect();
        Cow::Owned(format!("{head}… ({} characters)", value.chars().count()))
    } else {
        Cow::Borrowed(value)
    }
}

/// An access key id as logs show it: `AKIA…WXYZ`.
pub fn key_id_shown(access_key_id: &str) -> String {
    let chars: Vec<char> = access_key_id.chars().collect();
    if chars.len() <= 2 * KEY_ID_SHOWN_CHARS {
        return MASK.to_owned();
    }
    let head: String = chars[..KEY_ID_SHOWN_CHARS].iter().collect();
    let tail: String = chars[chars.len() - KEY_ID_SHOWN_CHARS..].iter().collect();
    format!("{head}…{tail}")
}

/// Credentials renewed at run time (an assumed role's keys, about one set an hour) are kept for
/// masking up to this many; older ones have expired long since.
const MAX_RENEWED: usize = 64;

/// Whether a secret stays known for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// From the config, the environment or a credentials file.
    Process,
    /// From a credentials provider, renewed before it expires.
    Renewed,
}

struct Entry {
    value: String,
    shown: String,
    lifetime: Lifetime,
}

/// The secrets known so far, in the order they were registered, and the automaton that finds
/// them (leftmost-longest, so a secret containing another is replaced whole).
#[derive(Default)]
struct Known {
    entries: Vec<Entry>,
    finder: Option<AhoCorasick>,
}

/// Every secret value this process holds, for masking output.
pub struct Registry {
    known: RwLock<Known>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub const fn new() -> Self {
        Self {
            known: RwLock::new(Known {
                entries: Vec::new(),
                finder: None,
            }),
        }
    }

    /// Registers a value that must never be shown. A value with the shape of an access key id
    /// is shown as one (whatever field it was found in: a secret key pasted under
    /// `access_key_id` is masked whole).
    pub fn register(&self, value: &str, lifetime: Lifetime) {
        let value = value.trim();
        if value.len() < MIN_MASKED_LEN {
            return;
        }
        let Ok(mut known) = self.known.write() else {
            return;
        };
        if known.entries.iter().any(|entry| entry.value == value) {
            return;
        }
        let shown = if looks_like_access_key_id(value) {
            key_id_shown(value)
        } else {
            MASK.to_owned()
        };
        known.entries.push(Entry {
            value: value.to_owned(),
            shown,
            lifetime,
        });
        let renewed = known
            .entries
            .iter()
            .filter(|entry| entry.lifetime == Lifetime::Renewed)
            .count();
        if renewed > MAX_RENEWED {
            if let Some(oldest) = known
                .entries
                .iter()
                .position(|entry| entry.lifetime == Lifetime::Renewed)
            {
                known.entries.remove(oldest);
            }
        }
        known.finder = AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(known.entries.iter().map(|entry| entry.value.as_str()))
            .ok();
    }

    /// How many distinct secrets are known.
    pub fn len(&self) -> usize {
        self.known.read().map_or(0, |known| known.entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `text` with every known secret replaced by what it may be shown as.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Ok(known) = self.known.read() else {
            return Cow::Borrowed(text);
        };
        let Some(finder) = &known.finder else {
            return Cow::Borrowed(text);
        };
        let mut out: Option<String> = None;
        let mut copied = 0;
        for found in finder.find_iter(text) {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..found.start()]);
            out.push_str(&known.entries[found.pattern().as_usize()].shown);
            copied = found.end();
        }
        match out {
            Some(mut out) => {
                out.push_str(&text[copied..]);
                Cow::Owned(out)
            }
            None => Cow::Borrowed(text),
        }
    }
}

/// Access key ids of every kind that signs requests, found by shape wherever they come from
/// (a dependency's debug line, a credentials file the SDK read before kinship saw its keys).
static KEY_ID_SHAPE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{12,124}\b").ok());

/// A value written after a name that says it is a secret: `secret_access_key: "…"`,
/// `"SessionToken": "…"`, `<SecretAccessKey>…</SecretAccessKey>`, `aws_session_token = …`,
/// `x-amz-security-token: …`, `x-aws-ec2-metadata-token: …`, `"Token": "…"`.
static NAMED_SECRET: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)((?:aws_?)?secret_?access_?key|(?:aws_?)?session_?token|(?:x-amz-)?security[-_]?token|x-aws-ec2-metadata-token|"token")(["']?\s*(?:=>|[:=>])\s*["']?)([A-Za-z0-9/+=]{8,})"#,
    )
    .ok()
});

/// `text` with every secret found by shape masked: access key ids shown as `AKIA…WXYZ`, values
/// named as secret keys or tokens replaced whole.
pub fn mask_shapes(text: &str) -> Cow<'_, str> {
    let mut text = Cow::Borrowed(text);
    if let Some(named) = NAMED_SECRET.as_ref() {
        if named.is_match(&text) {
            let replaced = named
                .replace_all(&text, |found: &Captures<'_>| {
                    format!("{}{}{MASK}", &found[1], &found[2])
                })
                .into_owned();
            text = Cow::Owned(replaced);
        }
    }
    if let Some(key_id) = KEY_ID_SHAPE.as_ref() {
        if key_id.is_match(&text) {
            let replaced = key_id
                .replace_all(&text, |found: &Captures<'_>| key_id_shown(&found[0]))
                .into_owned();
            text = Cow::Owned(replaced);
        }
    }
    text
}

/// The process's registry: what the logging set-up masks.
pub static SECRETS: Registry = Registry::new();

/// Registers `value`, known for the life of the process, with the process's registry.
pub fn register(value: &str) {
    SECRETS.register(value, Lifetime::Process);
}

/// Registers `value`, a credential a provider renewed, with the process's registry.
pub fn register_renewed(value: &str) {
    SECRETS.register(value, Lifetime::Renewed);
}

/// `text` with every secret this process holds masked, and every value with the shape of a
/// key id or named as a secret masked too: what any output of kinship goes through.
pub fn mask(text: &str) -> Cow<'_, str> {
    match SECRETS.mask(text) {
        Cow::Borrowed(clean) => mask_shapes(clean),
        Cow::Owned(masked) => Cow::Owned(mask_shapes(&masked).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_ids_are_recognised_by_shape() {
        assert!(looks_like_access_key_id("AKIAIOSFODNN7EXAMPLE"));
        assert!(looks_like_access_key_id("ASIAKINSHIPTESTKEY01"));
        assert!(!looks_like_access_key_id(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        ));
        assert!(!looks_like_access_key_id("AKIA"));
        assert!(!looks_like_access_key_id("SHORTNAME"));
        assert!(!looks_like_access_key_id("ALLCAPITALSNODIGITS"));
    }

    #[test]
    fn secret_like_values_are_quoted_as_a_prefix_and_others_whole() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(quoted(secret), "wJal… (40 characters)");
        assert_eq!(quoted("AKIAIOSFODNN7EXAMPLE"), "AKIA… (20 characters)");
        assert_eq!(
            quoted("FwoGZXIvYXdzEBYaDH7tokenTOKEN123"),
            "FwoG… (32 characters)"
        );
        for plain in [
            "eu-west-1",
            "http://127.0.0.1:4567",
            "application-logs",
            "/var/log/app/*.log",
            "logs/application/web",
            "MyStream2024Logs",
            "kinship-audit-logs-to-s3",
            "arn:aws:iam::123456789012:role/kinship",
            "5 minutes",
        ] {
            assert_eq!(quoted(plain), plain);
        }
    }

    #[test]
    fn key_ids_show_their_kind_and_last_four() {
        assert_eq!(key_id_shown("AKIAIOSFODNN7EXAMPLE"), "AKIA…MPLE");
        assert_eq!(key_id_shown("AKIA1234"), MASK);
    }

    #[test]
    fn registered_secrets_are_masked_wherever_they_appear() {
        let registry = Registry::new();
        assert_eq!(registry.mask("nothing known yet"), "nothing known yet");
        registry.register("AKIAIOSFODNN7EXAMPLE", Lifetime::Process);
        registry.register(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            Lifetime::Process,
        );
        registry.register("short", Lifetime::Process);
        assert_eq!(registry.len(), 2);
        let line = r#"Credentials { access_key_id: "AKIAIOSFODNN7EXAMPLE", secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" } short"#;
        assert_eq!(
            registry.mask(line),
            r#"Credentials { access_key_id: "AKIA…MPLE", secret: "<redacted>" } short"#
        );
        assert!(matches!(registry.mask("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_secret_pasted_as_a_key_id_is_masked_whole() {
        let registry = Registry::new();
        // Swapped in the config: the secret under access_key_id is still a secret.
        registry.register(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            Lifetime::Process,
        );
        registry.register("AKIAIOSFODNN7EXAMPLE", Lifetime::Process);
        let masked = registry.mask("access_key_id: \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"");
        assert_eq!(masked, "access_key_id: \"<redacted>\"");
    }

    #[test]
    fn secrets_are_found_by_shape_without_being_registered() {
        let cases = [
            (
                r#"loaded base credentials creds=Credentials { provider_name: "ProfileFile", access_key_id: "AKIAPROFILEKEY000001", secret_access_key: "** redacted **" }"#,
                r#"loaded base credentials creds=Credentials { provider_name: "ProfileFile", access_key_id: "AKIA…0001", secret_access_key: "** redacted **" }"#,
            ),
            (
                "<SecretAccessKey>wJalrXUtnFEMI/K7MDENG</SecretAccessKey><SessionToken>FwoGZXIvYXdzEBYaD+x==</SessionToken>",
                "<SecretAccessKey><redacted></SecretAccessKey><SessionToken><redacted></SessionToken>",
            ),
            (
                r#"{"AccessKeyId":"ASIAEXAMPLEKEY123456","SecretAccessKey":"abcdEFGH/1234+5678","Token":"IQoJb3JpZ2luX2VjEJr"}"#,
                r#"{"AccessKeyId":"ASIA…3456","SecretAccessKey":"<redacted>","Token":"<redacted>"}"#,
            ),
            (
                "aws_secret_access_key = wJalrXUtnFEMIK7MDENGbPxRfiCY\naws_session_token=abcdefgh1234",
                "aws_secret_access_key = <redacted>\naws_session_token=<redacted>",
            ),
            (
                "\"x-amz-security-token\": \"IQoJb3JpZ2luX2VjEJr//////\"",
                "\"x-amz-security-token\": \"<redacted>\"",
            ),
            (
                "\"x-aws-ec2-metadata-token\": \"AQAEAKinshipImdsToken0123456789==\"",
                "\"x-aws-ec2-metadata-token\": \"<redacted>\"",
            ),
            (
                "Credential=AKIAIOSFODNN7EXAMPLE/20261204/us-east-1/kinesis/aws4_request",
                "Credential=AKIA…MPLE/20261204/us-east-1/kinesis/aws4_request",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(mask_shapes(line), expected);
        }
        for clean in [
            "Rotated file. path=/var/log/app.log records=500",
            "session token expires in 5 minutes",
            "shard shardId-000000000001 sequence 49590338271490256608559692538361571095921575989136588898",
        ] {
            assert!(matches!(mask_shapes(clean), Cow::Borrowed(_)), "{clean}");
        }
    }

    #[test]
    fn renewed_credentials_are_kept_up_to_a_bound_and_the_config_s_for_good() {
        let registry = Registry::new();
        registry.register("configSecret/0123456789", Lifetime::Process);
        for renewal in 0..=MAX_RENEWED {
            registry.register(&format!("renewedSecret/{renewal:04}"), Lifetime::Renewed);
        }
        assert_eq!(registry.len(), 1 + MAX_RENEWED);
        assert_eq!(registry.mask("configSecret/0123456789"), MASK);
        assert_eq!(registry.mask("renewedSecret/0000"), "renewedSecret/0000");
        let newest = format!("renewedSecret/{MAX_RENEWED:04}");
        assert_eq!(registry.mask(&newest), MASK);
    }

    #[test]
    fn a_secret_containing_another_is_masked_whole() {
        let registry = Registry::new();
        registry.register("tokenpart", Lifetime::Process);
        registry.register("longer-tokenpart-secret", Lifetime::Process);
        assert_eq!(
            registry.mask("a longer-tokenpart-secret and tokenpart"),
            "a <redacted> and <redacted>"
        );
    }
}
