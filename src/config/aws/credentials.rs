//! Where a flow's credentials come from (the default chain, a profile, or keys in the file), a
//! role assumed on top of them, and the secrets among them, which never show in logs.

use std::fmt;
use std::time::Duration;

use super::arn::is_role_arn;
use crate::config::raw::{RawAssumeRole, RawAws};
use crate::config::Checker;
use crate::secrets::quoted;

const DEFAULT_SESSION_NAME: &str = "kinship";
/// STS allows role sessions of 15 minutes to 12 hours (the role's own maximum may be lower).
const MIN_ROLE_SESSION: Duration = Duration::from_secs(15 * 60);
const MAX_ROLE_SESSION: Duration = Duration::from_secs(12 * 3600);
pub(super) const DEFAULT_ROLE_SESSION: Duration = Duration::from_secs(3600);

/// A value that must never be logged: its `Debug` output is a placeholder and it has no
/// `Display`, so it can only be read on purpose, with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Where a flow's base credentials come from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum CredentialSource {
    /// The SDK's default chain: environment, shared profile, web identity, ECS, IMDSv2.
    #[default]
    DefaultChain,
    /// A named profile of the shared config and credentials files.
    Profile(String),
    /// Keys written in the config file.
    Static {
        /// Not secret on its own, but kept out of logs all the same (only its kind prefix shows).
        access_key_id: Secret,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
}

/// A role assumed through STS on top of the base credentials, refreshed before it expires.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<Secret>,
    pub session_name: String,
    pub duration: Duration,
}

impl Checker<'_> {
    /// The block's credentials: a profile, or keys, or neither (`None`: inherited, or the
    /// default chain).
    pub(super) fn credentials(&mut self, prefix: &str, raw: &RawAws) -> Option<CredentialSource> {
        // Which keys go together cannot be judged while one of them was reported already.
        let reported = [
            "profile",
            "access_key_id",
            "secret_access_key",
            "session_token",
        ]
        .iter()
        .any(|key| self.rejected(&format!("{prefix}.{key}")));
        if reported {
            return None;
        }
        let from_keys = self.static_keys(prefix, raw);
        match (&raw.profile, from_keys) {
            (Some(_), Some(_)) => {
                self.problem(
                    &format!("{prefix}.profile"),
                    "is set together with access_key_id; choose one source of credentials",
                );
                None
            }
            (Some(profile), None) if profile.trim().is_empty() => {
                self.problem(&format!("{prefix}.profile"), "must not be empty");
                None
            }
            (Some(profile), None) => Some(CredentialSource::Profile(profile.clone())),
            (None, keys) => keys,
        }
    }

    /// Keys written in the block: an access key id and secret access key together, a session
    /// token only beside them.
    fn static_keys(&mut self, prefix: &str, raw: &RawAws) -> Option<CredentialSource> {
        let keys = (
            raw.access_key_id.as_ref(),
            raw.secret_access_key.as_ref(),
            raw.session_token.as_ref(),
        );
        match keys {
            (None, None, None) => None,
            (Some(id), Some(secret), token) => {
                if id.trim().is_empty() || secret.trim().is_empty() {
                    self.problem(
                        &format!("{prefix}.access_key_id"),
                        "the access key id and secret access key must not be empty",
                    );
                }
                Some(CredentialSource::Static {
                    access_key_id: Secret::new(id.clone()),
                    secret_access_key: Secret::new(secret.clone()),
                    session_token: token.map(|token| Secret::new(token.clone())),
                })
            }
            (None, Some(_), _) => {
                self.problem(
                    &format!("{prefix}.secret_access_key"),
                    "is set without access_key_id; give both",
                );
                None
            }
            (Some(_), None, _) => {
                self.problem(
                    &format!("{prefix}.access_key_id"),
                    "is set without secret_access_key; give both",
                );
                None
            }
            (None, None, Some(_)) => {
                self.problem(
                    &format!("{prefix}.session_token"),
                    "is set without access_key_id and secret_access_key",
                );
                None
            }
        }
    }

    /// The `assume_role` block at `key`; `None` when anything in it is wrong.
    pub(super) fn assume_role(&mut self, key: &str, raw: RawAssumeRole) -> Option<AssumeRole> {
        let before = self.problems.len();
        let role_arn = match raw.role_arn {
            None => {
                self.problem(
                    &format!("{key}.role_arn"),
                    "is missing; give the ARN of the role to assume",
                );
                String::new()
            }
            Some(arn) => {
                if !is_role_arn(&arn) {
                    self.problem(
                        &format!("{key}.role_arn"),
                        format!(
                            "`{}` is not a role ARN such as arn:aws:iam::123456789012:role/kinship",
                            quoted(&arn)
                        ),
                    );
                }
                arn
            }
        };
        let session_name = raw
            .session_name
            .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned());
        let valid_session = (2..=64).contains(&session_name.len())
            && session_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        if !valid_session {
            self.problem(
                &format!("{key}.session_name"),
                format!(
                    "`{}` must be 2 to 64 letters, digits or any of +=,.@_-",
                    quoted(&session_name)
                ),
            );
        }
        if let Some(external_id) = &raw.external_id {
            if !(2..=1224).contains(&external_id.len()) {
                self.problem(
                    &format!("{key}.external_id"),
                    "must be 2 to 1,224 characters",
                );
            }
        }
        let duration = self.duration(
            &format!("{key}.duration"),
            raw.duration.clone(),
            DEFAULT_ROLE_SESSION,
        );
        if raw.duration.is_some() && !(MIN_ROLE_SESSION..=MAX_ROLE_SESSION).contains(&duration) {
            self.problem(
                &format!("{key}.duration"),
                "must be from 15m to 12h (STS's bounds for a role session)",
            );
        }
        (self.problems.len() == before).then(|| AssumeRole {
            role_arn,
            external_id: raw.external_id.map(Secret::new),
            session_name,
            duration,
        })
    }
}
