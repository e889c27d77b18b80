//! The first pass over the YAML: types as serde_yaml reads them, every problem reported.

use serde_yaml::Mapping;

use super::shapes::*;
use super::tree::*;
use super::walk::*;
use super::*;

fn problems(text: &str) -> Vec<String> {
    let document = read(text).expect("readable YAML");
    document
        .problems
        .iter()
        .map(|problem| {
            format!(
                "{}:{}: {}: {}",
                problem.line.unwrap_or(0),
                problem.column.unwrap_or(0),
                problem.key,
                problem.message
            )
        })
        .collect()
}

#[test]
fn plain_scalars_are_typed_as_serde_yaml_types_them() {
    for text in [
        "42",
        "-7",
        "+7",
        "0x1F",
        "-0x1F",
        "0o17",
        "0b101",
        "0644",
        "-0",
        "1.5",
        "1e3",
        ".5",
        "1.",
        "-.inf",
        ".Inf",
        ".nan",
        "1_000",
        "true",
        "True",
        "TRUE",
        "yes",
        "no",
        "on",
        "~",
        "null",
        "Null",
        "NULL",
        "",
        "nan",
        "inf",
        "0x",
        "+-5",
        "-+5",
        "12abc",
        "1e400",
        "007",
        "+0x10",
        "0xG",
        "+.nan",
        "-.nan",
        "18446744073709551615",
        "-9223372036854775808",
    ] {
        let document = format!("value: {text}\n");
        let expected: Mapping = serde_yaml::from_str(&document).expect(text);
        let expected = expected.get("value").cloned().unwrap_or(Value::Null);
        let mine = Scalar {
            text: text.to_owned(),
            plain: true,
        }
        .to_value();
        let same = match (&mine, &expected) {
            (Value::Number(a), Value::Number(b)) => {
                a.as_f64().is_some_and(f64::is_nan) && b.as_f64().is_some_and(f64::is_nan)
                    || a == b
                    || a.as_f64() == b.as_f64()
            }
            _ => mine == expected,
        };
        assert!(same, "{text:?}: {mine:?} but serde_yaml reads {expected:?}");
    }
}

#[test]
fn every_problem_of_every_mapping_is_reported() {
    let found = problems(
            "flows:\n  - name: app\n    files: /var/log/*.log\n    kinesis_stream: app\n    max_batch_agee: 1s\n    max_in_flight: many\n    retry_max_backoff: soon\n    aws:\n      regoin: x\n      assume_role:\n        role_rn: arn\n    partition_key: {regx: a}\n    processors:\n      - type: filter\n        includ: x\nmetrics:\n  listn: x\ncloudwatch:\n  namespce: x\nstate_dri: /x\n",
        );
    assert_eq!(
        found,
        [
            "5:5: flows[0].max_batch_agee: unknown key; did you mean max_batch_age?",
            "6:20: flows[0].max_in_flight: expected a whole number, found the text `many`",
            "9:7: flows[0].aws.regoin: unknown key; did you mean region?",
            "11:9: flows[0].aws.assume_role.role_rn: unknown key; did you mean role_arn?",
            "12:21: flows[0].partition_key.regx: unknown key; did you mean regex?",
            "15:9: flows[0].processors[0].includ: unknown key; did you mean include?",
            "17:3: metrics.listn: unknown key; did you mean listen?",
            "19:3: cloudwatch.namespce: unknown key; did you mean namespace?",
            "20:1: state_dri: unknown key; did you mean state_dir?",
        ]
    );
}

#[test]
fn an_unknown_key_with_no_near_name_points_at_the_readme() {
    assert_eq!(
            problems("flows:\n  - name: a\n    compress_everything: yes\n"),
            ["3:5: flows[0].compress_everything: unknown key; the keys of a flow are listed under \"Flows\" in the README"]
        );
    assert_eq!(
            problems("flows:\n  - processors:\n      - type: redact\n        zzzz: 1\n"),
            ["4:9: flows[0].processors[0].zzzz: unknown key; the keys of a redact processor are listed under \"Processors\" in the README"]
        );
}

#[test]
fn plain_numbers_and_booleans_are_not_strings_and_quoted_ones_are() {
    assert_eq!(
            problems("aws:\n  region: 42\n  profile: '42'\nflows:\n  - kinesis_stream: true\n    name: ~\n    firehose_stream: !!str false\n    files: [/a, 7, \"8\"]\n"),
            [
                "2:11: aws.region: expected a string, found `42`, which YAML reads as a number; write it in quotes (\"42\") to make it a string",
                "5:21: flows[0].kinesis_stream: expected a string, found `true`, which YAML reads as a boolean; write it in quotes (\"true\") to make it a string",
                "6:11: flows[0].name: expected a string, found `~`, which YAML reads as no value; give a value, or leave the key out",
                "8:17: flows[0].files[1]: expected a string, found `7`, which YAML reads as a number; write it in quotes (\"7\") to make it a string",
            ]
        );
}

#[test]
fn strings_lists_and_mappings_where_others_are_expected_are_reported() {
    assert_eq!(
            problems("watch_config: yes\nmax_open_files: '64'\nmemory_budget: -1\nlog_file_keep: 1.5\naws: [a]\nflows:\n  name: a\ncloudwatch:\n  enabled: 'true'\n  aws: text\n"),
            [
                "1:15: watch_config: expected true or false, found the text `yes`",
                "2:17: max_open_files: expected a whole number, found the quoted text `64`; write it without quotes",
                "3:16: memory_budget: `-1` is negative; give a whole number from 0 up",
                "4:16: log_file_keep: `1.5` is not a whole number",
                "5:6: aws: expected a mapping, found a list",
                "7:3: flows: expected a list, found a mapping",
                "9:12: cloudwatch.enabled: expected true or false, found the quoted text `true`; write it without quotes",
                "10:8: cloudwatch.aws: expected a mapping, found the text `text`",
            ]
        );
    assert_eq!(
            problems("flows:\n  - files: {a: b}\n    partition_key: [a]\n    processors: [{type: to_xml}, {type: filtr}, {include: a}]\n    name:\n      - a\n"),
            [
                "2:13: flows[0].files: expected a string or a list, found a mapping",
                "3:20: flows[0].partition_key: expected a string or a mapping, found a list",
                "4:25: flows[0].processors[0].type: `to_xml` is not a processor type; give one of single_line, csv_to_json, log_to_json, filter, redact, add_ec2_metadata, add_metadata",
                "4:41: flows[0].processors[1].type: `filtr` is not a processor type; did you mean filter?",
                "4:50: flows[0].processors[2]: has no type; give one of single_line, csv_to_json, log_to_json, filter, redact, add_ec2_metadata, add_metadata",
                "6:7: flows[0].name: expected a string, found a list",
            ]
        );
}

#[test]
fn duplicate_keys_are_reported_where_they_are_with_their_path() {
    assert_eq!(
            problems("state_dir: /a\nstate_dir: /b\nflows:\n  - name: a\n    max_in_flight: 2\n    aws:\n      region: x\n      region: y\n    max_in_flight: 3\n    processors:\n      - type: add_metadata\n        fields: {env: a, env: b}\n"),
            [
                "2:1: state_dir: duplicate key (first written at 1:1); remove one",
                "8:7: flows[0].aws.region: duplicate key (first written at 7:7); remove one",
                "9:5: flows[0].max_in_flight: duplicate key (first written at 5:5); remove one",
                "12:26: flows[0].processors[0].fields.env: duplicate key (first written at 12:18); remove one",
            ]
        );
    // The first is kept.
    let document = read("state_dir: /a\nstate_dir: /b\n").expect("readable");
    assert_eq!(document.value["state_dir"], Value::String("/a".into()));
}

#[test]
fn free_form_fields_keep_any_value_as_yaml_types_it() {
    let document = read(
            "flows:\n  - processors:\n      - type: add_metadata\n        fields: {env: prod, tier: 2, ratio: 0.5, on: true, none: ~, list: [1, a], nested: {a: 1}}\n",
        )
        .expect("readable");
    assert!(document.problems.is_empty(), "{:?}", document.problems);
    let fields = &document.value["flows"][0]["processors"][0]["fields"];
    assert_eq!(fields["tier"], Value::Number(2.into()));
    assert_eq!(fields["ratio"], Value::Number(0.5.into()));
    assert_eq!(fields["on"], Value::Bool(true));
    assert_eq!(fields["none"], Value::Null);
    assert_eq!(fields["nested"]["a"], Value::Number(1.into()));
    assert_eq!(
        problems("flows:\n  - processors:\n      - type: add_metadata\n        fields: [env]\n"),
        ["4:17: flows[0].processors[0].fields: expected a mapping, found a list"]
    );
}

#[test]
fn empty_blocks_are_as_if_not_written() {
    let document = read("aws:\nmetrics: ~\nflows:\n").expect("readable");
    assert!(document.problems.is_empty(), "{:?}", document.problems);
    assert_eq!(document.value, Value::Mapping(Mapping::new()));
}

#[test]
fn aliases_are_expanded_and_bombs_refused() {
    let document =
        read("aws: &shared\n  region: eu-west-1\nflows:\n  - name: a\n    aws: *shared\n")
            .expect("readable");
    assert!(document.problems.is_empty(), "{:?}", document.problems);
    assert_eq!(
        document.value["flows"][0]["aws"]["region"],
        Value::String("eu-west-1".into())
    );
    let mut bomb = String::from("a: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..8 {
        let previous = format!("*a{}", level - 1);
        let items = [previous.as_str(); 10].join(", ");
        bomb.push_str(&format!("a{level}: &a{level} [{items}]\n"));
    }
    let refused = read(&bomb).expect_err("too many values");
    assert!(refused.message.contains("more than"), "{refused:?}");
}

#[test]
fn syntax_errors_stand_alone_with_their_position() {
    let problem = read("flows:\n  - name: [unclosed\n").expect_err("not YAML");
    assert!(
        problem.line.is_some() && problem.column.is_some(),
        "{problem:?}"
    );
    assert!(
        problem.message.starts_with("not valid YAML: "),
        "{problem:?}"
    );
    let deep = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert!(read(&deep)
        .expect_err("too deep")
        .message
        .contains("nest more than 128"));
    let list = read("- a\n- b\n").expect_err("not a mapping");
    assert_eq!(
        list.message,
        "the file must be a mapping of keys such as state_dir and flows, not a list"
    );
}

#[test]
fn a_second_document_and_foreign_tags_are_reported() {
    assert_eq!(
        problems("state_dir: /a\n---\nstate_dir: /b\n"),
        ["2:1: : a second YAML document starts here; kinship reads one document per file"]
    );
    assert_eq!(
        problems("aws:\n  region: !secret eu-west-1\n"),
        ["2:19: aws.region: the tag `!secret` means nothing to kinship; remove it"]
    );
}

#[test]
fn secret_like_values_are_quoted_as_a_prefix() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let found = problems(&format!("max_open_files: {secret}\n{secret}: 1\n"));
    assert_eq!(
            found,
            [
                "1:17: max_open_files: expected a whole number, found the text `wJal… (40 characters)`",
                "2:1: wJal… (40 characters): unknown key; the keys of the top level are listed under \"Top level\" in the README",
            ]
        );
}

#[test]
fn the_edit_distance_counts_swaps_as_one() {
    assert_eq!(edit_distance("regoin", "region"), 1);
    assert_eq!(edit_distance("max_batch_agee", "max_batch_age"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(
        nearest("Region", ["region", "profile"].into_iter()),
        Some("region")
    );
    assert_eq!(
        nearest("maxBatchAge", ["max_batch_age"].into_iter()),
        Some("max_batch_age")
    );
    assert_eq!(nearest("type", ["name", "files"].into_iter()), None);
}

#[test]
fn positions_point_at_keys_list_items_and_mappings() {
    let document = read("state_dir: /x\naws:\n  region: eu-west-1\nflows:\n  - name: a\n    files: [/a, /b]\n  - name: b\n    max_batch_age: 5q\n").expect("readable");
    let at = |key: &str| document.positions.find(key).map(|p| (p.line, p.column));
    assert_eq!(at("state_dir"), Some((1, 1)));
    assert_eq!(at("aws.region"), Some((3, 3)));
    assert_eq!(at("flows[1].max_batch_age"), Some((8, 5)));
    assert_eq!(at("flows[0].files[1]"), Some((6, 17)));
    assert_eq!(at("flows[1]"), Some((7, 5)));
    // A missing key points at its parent.
    assert_eq!(at("flows[1].kinesis_stream"), Some((7, 5)));
}

/// Every mapping's shape, reachable from the top level, with its path for messages.
fn shapes() -> Vec<&'static Shape> {
    fn visit(kind: Kind, out: &mut Vec<&'static Shape>) {
        match kind {
            Kind::Mapping(shape) => {
                if !out.iter().any(|seen| std::ptr::eq(*seen, shape)) {
                    out.push(shape);
                    for (_, kind) in shape.keys {
                        visit(*kind, out);
                    }
                }
            }
            Kind::Typed(variants) => {
                for variant in variants {
                    visit(Kind::Mapping(&variant.shape), out);
                }
            }
            Kind::List(item) => visit(*item, out),
            Kind::Either(first, second) => {
                visit(*first, out);
                visit(*second, out);
            }
            Kind::String | Kind::Bool | Kind::WholeNumber | Kind::FreeMapping => {}
        }
    }
    let mut out = Vec::new();
    visit(Kind::Mapping(&TOP_LEVEL), &mut out);
    out
}

/// The keys serde's derive expects of `T`, read from the error a key no struct has draws.
fn serde_keys<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    mut sample: Mapping,
) -> Vec<String> {
    sample.insert("zz_no_such_key".into(), Value::Null);
    let error = serde_yaml::from_value::<T>(Value::Mapping(sample))
        .expect_err("an unknown key is refused")
        .to_string();
    let Some((_, expected)) = error.split_once("expected") else {
        return Vec::new();
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn shape_keys(shape: &Shape) -> Vec<String> {
    let mut keys: Vec<String> = shape
        .keys
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .filter(|name| name != TYPE_KEY)
        .collect();
    keys.sort();
    keys
}

fn sorted(mut keys: Vec<String>) -> Vec<String> {
    keys.retain(|name| name != TYPE_KEY);
    keys.sort();
    keys
}

#[test]
fn the_shape_and_the_raw_types_name_the_same_keys() {
    use super::super::raw;
    let mut checked: Vec<&Shape> = Vec::new();
    let mut compare = |shape: &'static Shape, serde: Vec<String>| {
        assert_eq!(shape_keys(shape), sorted(serde), "{}", shape.what);
        checked.push(shape);
    };
    compare(&TOP_LEVEL, serde_keys::<raw::RawConfig>(Mapping::new()));
    compare(&AWS, serde_keys::<raw::RawAws>(Mapping::new()));
    compare(
        &ASSUME_ROLE,
        serde_keys::<raw::RawAssumeRole>(Mapping::new()),
    );
    compare(&TLS, serde_keys::<raw::RawTls>(Mapping::new()));
    compare(&METRICS, serde_keys::<raw::RawMetrics>(Mapping::new()));
    compare(
        &CLOUDWATCH,
        serde_keys::<raw::RawCloudWatch>(Mapping::new()),
    );
    compare(&FLOW, serde_keys::<raw::RawFlow>(Mapping::new()));
    compare(&EVENT_LOG, serde_keys::<raw::RawEventLog>(Mapping::new()));
    compare(&JOURNALD, serde_keys::<raw::RawJournald>(Mapping::new()));
    compare(
        &KEY_EXTRACTION,
        serde_keys::<raw::RawKeyExtraction>(Mapping::new()),
    );
    compare(
        &REDACT_PATTERN,
        serde_keys::<raw::RawRedactPattern>(Mapping::new()),
    );
    for variant in PROCESSORS {
        let mut sample = Mapping::new();
        sample.insert(TYPE_KEY.into(), variant.name.into());
        compare(&variant.shape, serde_keys::<raw::RawProcessor>(sample));
    }
    let mut unknown_type = Mapping::new();
    unknown_type.insert(TYPE_KEY.into(), "zz_no_such_type".into());
    let error = serde_yaml::from_value::<raw::RawProcessor>(Value::Mapping(unknown_type))
        .expect_err("an unknown type is refused")
        .to_string();
    let serde_types: Vec<&str> = error
        .split_once("expected")
        .map(|(_, names)| names.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let shape_types: Vec<&str> = PROCESSORS.iter().map(|variant| variant.name).collect();
    assert_eq!(shape_types, serde_types);
    // Every shape reachable from the top level was compared.
    for shape in shapes() {
        assert!(
            checked.iter().any(|seen| std::ptr::eq(*seen, shape)),
            "{} is not compared with its raw type",
            shape.what
        );
    }
}

/// A value of `kind`; `alternative` chooses the side of an `Either`.
fn sample(kind: Kind, alternative: usize) -> Value {
    match kind {
        Kind::String => "x".into(),
        Kind::Bool => true.into(),
        Kind::WholeNumber => 1.into(),
        Kind::FreeMapping => {
            let mut any = Mapping::new();
            any.insert("k".into(), 1.into());
            Value::Mapping(any)
        }
        // A list of items that can be refused also holds a hole where one was.
        Kind::List(Kind::Typed(variants)) => Value::Sequence(
            variants
                .iter()
                .map(|variant| sample_mapping(&variant.shape, alternative, Some(variant.name)))
                .chain([Value::Null])
                .collect(),
        ),
        Kind::List(Kind::String) => Value::Sequence(vec![sample(Kind::String, alternative)]),
        Kind::List(item) => Value::Sequence(vec![sample(*item, alternative), Value::Null]),
        Kind::Mapping(shape) => sample_mapping(shape, alternative, None),
        Kind::Typed(variants) => {
            sample_mapping(&variants[0].shape, alternative, Some(variants[0].name))
        }
        Kind::Either(first, second) => {
            sample(if alternative == 0 { *first } else { *second }, alternative)
        }
    }
}

fn sample_mapping(shape: &Shape, alternative: usize, type_name: Option<&str>) -> Value {
    let mut out = Mapping::new();
    for (name, kind) in shape.keys {
        let value = match type_name {
            Some(type_name) if *name == TYPE_KEY => type_name.into(),
            _ => sample(*kind, alternative),
        };
        out.insert((*name).into(), value);
    }
    Value::Mapping(out)
}

#[test]
fn every_key_of_every_kind_and_every_hole_reads_into_the_raw_types() {
    for alternative in 0..2 {
        let document = sample(Kind::Mapping(&TOP_LEVEL), alternative);
        let raw: Result<super::super::raw::RawConfig, _> = serde_yaml::from_value(document);
        assert!(raw.is_ok(), "alternative {alternative}: {raw:?}");
    }
}
