//! The static description of every mapping the config file may hold: its keys, the kind of
//! value each takes, and where the README lists them.

use super::tree::Form;

/// The kind of value a key takes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    String,
    Bool,
    /// A whole number from 0 up (serde's `u64`).
    WholeNumber,
    List(&'static Kind),
    /// A mapping of known keys.
    Mapping(&'static Shape),
    /// A mapping whose `type` chooses its keys.
    Typed(&'static [Variant]),
    /// Either kind, chosen by the form written (a scalar, a list or a mapping).
    Either(&'static Kind, &'static Kind),
    /// A mapping of any keys and values, kept as YAML types them (`add_metadata.fields`).
    FreeMapping,
}

/// A mapping's keys, and where the README lists them.
#[derive(Debug)]
pub(super) struct Shape {
    /// What the mapping is, for messages: `a flow`.
    pub(super) what: &'static str,
    /// The README section that lists its keys.
    pub(super) section: &'static str,
    pub(super) keys: &'static [(&'static str, Kind)],
}

/// One `type` of a [`Kind::Typed`] mapping; its shape includes `type` itself.
#[derive(Debug)]
pub(super) struct Variant {
    pub(super) name: &'static str,
    pub(super) shape: Shape,
}

pub(super) const STRING: Kind = Kind::String;
pub(super) const BOOL: Kind = Kind::Bool;
pub(super) const NUMBER: Kind = Kind::WholeNumber;
pub(super) const STRING_OR_LIST: Kind = Kind::Either(&Kind::String, &Kind::List(&Kind::String));
pub(super) const STRINGS: Kind = Kind::List(&Kind::String);

pub(super) const TOP_LEVEL: Shape = Shape {
    what: "the top level",
    section: "Top level",
    keys: &[
        ("state_dir", STRING),
        ("aws", Kind::Mapping(&AWS)),
        ("shutdown_grace", STRING),
        ("checkpoint_interval", STRING),
        ("checkpoint_commit", STRING),
        ("progress_interval", STRING),
        ("progress_format", STRING),
        ("behind_warning_bytes", NUMBER),
        ("checkpoint_expiry", STRING),
        ("max_open_files", NUMBER),
        ("memory_budget", NUMBER),
        ("dry_run_output", STRING),
        ("metrics", Kind::Mapping(&METRICS)),
        ("log_level", STRING),
        ("log_format", STRING),
        ("log_file", STRING),
        ("log_file_max_bytes", NUMBER),
        ("log_file_keep", NUMBER),
        ("watch_config", BOOL),
        ("cloudwatch", Kind::Mapping(&CLOUDWATCH)),
        ("flows", Kind::List(&Kind::Mapping(&FLOW))),
    ],
};

pub(super) const AWS: Shape = Shape {
    what: "an aws block",
    section: "AWS settings",
    keys: &[
        ("region", STRING),
        ("endpoint_url", STRING),
        ("sts_endpoint_url", STRING),
        ("profile", STRING),
        ("access_key_id", STRING),
        ("secret_access_key", STRING),
        ("session_token", STRING),
        ("assume_role", Kind::Mapping(&ASSUME_ROLE)),
        ("request_timeout", STRING),
        ("connect_timeout", STRING),
        ("allow_insecure_http", BOOL),
        ("check_identity", BOOL),
        ("tls", Kind::Mapping(&TLS)),
    ],
};

pub(super) const TLS: Shape = Shape {
    what: "a tls block",
    section: "AWS settings",
    keys: &[("ca_file", STRING)],
};

pub(super) const ASSUME_ROLE: Shape = Shape {
    what: "an assume_role block",
    section: "AWS settings",
    keys: &[
        ("role_arn", STRING),
        ("external_id", STRING),
        ("session_name", STRING),
        ("duration", STRING),
    ],
};

pub(super) const METRICS: Shape = Shape {
    what: "the metrics block",
    section: "Top level",
    keys: &[("listen", STRING), ("stuck_after", STRING)],
};

pub(super) const CLOUDWATCH: Shape = Shape {
    what: "the cloudwatch block",
    section: "CloudWatch metrics",
    keys: &[
        ("enabled", BOOL),
        ("namespace", STRING),
        ("interval", STRING),
        ("tag_instance", BOOL),
        ("instance_id", STRING),
        ("aws", Kind::Mapping(&AWS)),
    ],
};

pub(super) const FLOW: Shape = Shape {
    what: "a flow",
    section: "Flows",
    keys: &[
        ("name", STRING),
        ("processors", Kind::List(&Kind::Typed(PROCESSORS))),
        ("on_error", STRING),
        ("files", STRING_OR_LIST),
        ("windows_event_log", Kind::Mapping(&EVENT_LOG)),
        ("journald", Kind::Mapping(&JOURNALD)),
        ("exclude", STRING_OR_LIST),
        ("ignore_older", STRING),
        ("shipped_files", STRING),
        ("shipped_files_dir", STRING),
        ("shipped_files_idle", STRING),
        ("kinesis_stream", STRING),
        ("firehose_stream", STRING),
        ("aws", Kind::Mapping(&AWS)),
        ("dry_run", BOOL),
        ("data_path", STRING),
        ("wire_format", STRING),
        ("ordering", STRING),
        ("aggregation", STRING),
        ("pack_records", BOOL),
        ("pack_record_bytes", NUMBER),
        ("compression", STRING),
        ("initial_position", STRING),
        (
            "partition_key",
            Kind::Either(&Kind::String, &Kind::Mapping(&KEY_EXTRACTION)),
        ),
        ("explicit_hash_key", STRING),
        ("max_batch_age", STRING),
        ("max_batch_records", NUMBER),
        ("max_batch_bytes", NUMBER),
        ("max_record_bytes", NUMBER),
        ("max_in_flight", NUMBER),
        ("poll_interval", STRING),
        ("scan_interval", STRING),
        ("retry_initial_backoff", STRING),
        ("retry_max_backoff", STRING),
        ("max_retry_duration", STRING),
        ("fingerprint_bytes", NUMBER),
        ("partial_line_timeout", STRING),
        ("multiline_start_pattern", STRING),
        ("multiline_flush_timeout", STRING),
        ("skip_header_lines", NUMBER),
        ("file_footer_pattern", STRING),
        ("oversize_records", STRING),
        ("truncated_record_terminator", STRING),
    ],
};

pub(super) const EVENT_LOG: Shape = Shape {
    what: "a windows_event_log block",
    section: "Windows Event Log",
    keys: &[("file", STRING), ("channel", STRING), ("query", STRING)],
};

pub(super) const JOURNALD: Shape = Shape {
    what: "a journald block",
    section: "The systemd journal",
    keys: &[
        ("directory", STRING),
        ("units", STRING_OR_LIST),
        ("max_priority", STRING),
        ("journalctl", STRING),
    ],
};

pub(super) const KEY_EXTRACTION: Shape = Shape {
    what: "a partition_key mapping",
    section: "Flows",
    keys: &[
        ("regex", STRING),
        ("json_field", STRING),
        ("fallback", STRING),
    ],
};

pub(super) const REDACT_PATTERN: Shape = Shape {
    what: "a redact pattern",
    section: "Processors",
    keys: &[("pattern", STRING), ("replacement", STRING)],
};

/// The key of a processor that names its kind.
pub(super) const TYPE_KEY: &str = "type";

pub(super) const PROCESSORS: &[Variant] = &[
    Variant {
        name: "single_line",
        shape: Shape {
            what: "a single_line processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("no_trim", BOOL),
                ("escape_newlines", BOOL),
                ("separator", STRING),
            ],
        },
    },
    Variant {
        name: "csv_to_json",
        shape: Shape {
            what: "a csv_to_json processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("field_names", STRINGS),
                ("delimiter", STRING),
            ],
        },
    },
    Variant {
        name: "log_to_json",
        shape: Shape {
            what: "a log_to_json processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("format", STRING),
                ("pattern", STRING),
                ("field_names", STRINGS),
                ("dash_as_null", BOOL),
            ],
        },
    },
    Variant {
        name: "filter",
        shape: Shape {
            what: "a filter processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("include", STRING_OR_LIST),
                ("exclude", STRING_OR_LIST),
            ],
        },
    },
    Variant {
        name: "redact",
        shape: Shape {
            what: "a redact processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("builtin", STRING_OR_LIST),
                ("replacement", STRING),
                ("patterns", Kind::List(&Kind::Mapping(&REDACT_PATTERN))),
            ],
        },
    },
    Variant {
        name: "add_ec2_metadata",
        shape: Shape {
            what: "an add_ec2_metadata processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("refresh", STRING),
                ("tags", BOOL),
                ("endpoint", STRING),
                ("ec2_endpoint", STRING),
            ],
        },
    },
    Variant {
        name: "add_metadata",
        shape: Shape {
            what: "an add_metadata processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("timestamp", BOOL),
                ("fields", Kind::FreeMapping),
                ("host", BOOL),
                ("file", BOOL),
                ("record_id", BOOL),
                ("envelope", BOOL),
            ],
        },
    },
];

impl Shape {
    pub(super) fn kind_of(&self, key: &str) -> Option<Kind> {
        self.keys
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, kind)| *kind)
    }
}

impl Kind {
    /// What the kind is, for messages: `a string`.
    pub(super) fn describe(self) -> String {
        match self {
            Kind::String => "a string".into(),
            Kind::Bool => "true or false".into(),
            Kind::WholeNumber => "a whole number".into(),
            Kind::List(_) => "a list".into(),
            Kind::Mapping(_) | Kind::Typed(_) | Kind::FreeMapping => "a mapping".into(),
            Kind::Either(first, second) => {
                format!("{} or {}", first.describe(), second.describe())
            }
        }
    }

    /// Whether a value of `form` can be of this kind.
    pub(super) fn takes(self, form: Form) -> bool {
        match self {
            Kind::String | Kind::Bool | Kind::WholeNumber => form == Form::Scalar,
            Kind::List(_) => form == Form::Sequence,
            Kind::Mapping(_) | Kind::Typed(_) | Kind::FreeMapping => form == Form::Mapping,
            Kind::Either(first, second) => first.takes(form) || second.takes(form),
        }
    }
}
