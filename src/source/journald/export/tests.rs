use tokio::io::BufReader;

use super::*;

/// `fields` in the export format: text as `NAME=value`, other values as binary fields.
fn exported(entries: &[&[(&str, &[u8])]]) -> Vec<u8> {
    let mut out = Vec::new();
    for fields in entries {
        for (name, value) in *fields {
            out.extend_from_slice(name.as_bytes());
            if value.contains(&b'\n') || value.contains(&0) {
                out.push(b'\n');
                out.extend_from_slice(&(value.len() as u64).to_le_bytes());
                out.extend_from_slice(value);
            } else {
                out.push(b'=');
                out.extend_from_slice(value);
            }
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    out
}

async fn read_all(output: &[u8], limits: Limits) -> Vec<Result<Vec<Field>, Next>> {
    // A small buffer: the output arrives in pieces, as from a pipe.
    let mut reader = BufReader::with_capacity(7, output);
    let (mut fields, mut line) = (Vec::new(), Vec::new());
    let mut read = Vec::new();
    loop {
        match next_entry(&mut reader, &mut fields, &mut line, limits)
            .await
            .expect("export format")
        {
            Next::End => return read,
            Next::Entry => read.push(Ok(std::mem::take(&mut fields))),
            other => read.push(Err(other)),
        }
    }
}

fn field(name: &str, value: &[u8]) -> Field {
    Field {
        name: name.into(),
        value: value.to_vec(),
        cut: false,
    }
}

fn cut(name: &str, value: &[u8]) -> Field {
    Field {
        cut: true,
        ..field(name, value)
    }
}

const ROOMY: Limits = Limits {
    value_bytes: 1024,
    entry_bytes: 4096,
};

#[tokio::test]
async fn text_and_binary_fields_are_read_entry_by_entry() {
    let output = exported(&[
        &[("__CURSOR", b"s=1;i=1"), ("MESSAGE", b"a=b")],
        &[("__CURSOR", b"s=1;i=2"), ("NOTE", b"one\ntwo\0")],
    ]);
    assert_eq!(
        read_all(&output, ROOMY).await,
        [
            Ok(vec![
                field("__CURSOR", b"s=1;i=1"),
                field("MESSAGE", b"a=b")
            ]),
            Ok(vec![
                field("__CURSOR", b"s=1;i=2"),
                field("NOTE", b"one\ntwo\0")
            ]),
        ]
    );
}

#[tokio::test]
async fn only_the_start_of_a_long_value_is_kept_and_a_large_entry_is_read_past() {
    let long = vec![b'x'; 100];
    let long_binary = [vec![0u8; 100], b"\n".to_vec()].concat();
    let output = exported(&[
        &[("__CURSOR", b"s=1;i=1"), ("MESSAGE", &long)],
        &[("__CURSOR", b"s=1;i=2"), ("DUMP", &long_binary)],
        &[
            ("__CURSOR", b"s=1;i=3"),
            ("A", &long),
            ("B", &long),
            ("C", &long),
        ],
        &[("__CURSOR", b"s=1;i=4"), ("MESSAGE", b"short")],
    ]);
    let limits = Limits {
        value_bytes: 40,
        entry_bytes: 100,
    };
    assert_eq!(
        read_all(&output, limits).await,
        [
            Ok(vec![
                field("__CURSOR", b"s=1;i=1"),
                cut("MESSAGE", &long[..40])
            ]),
            Ok(vec![
                field("__CURSOR", b"s=1;i=2"),
                cut("DUMP", &long_binary[..40])
            ]),
            Err(Next::TooLong),
            Ok(vec![
                field("__CURSOR", b"s=1;i=4"),
                field("MESSAGE", b"short")
            ]),
        ]
    );
}

#[tokio::test]
async fn an_unfinished_last_entry_is_dropped_and_garbage_is_an_error() {
    let mut output = exported(&[&[("__CURSOR", b"s=1;i=1")]]);
    output.extend_from_slice(b"__CURSOR=s=1;i=2\nMESS");
    assert_eq!(
        read_all(&output, ROOMY).await,
        [Ok(vec![field("__CURSOR", b"s=1;i=1")])]
    );
    // A binary field whose value ends early.
    let mut cut = b"DUMP\n".to_vec();
    cut.extend_from_slice(&100u64.to_le_bytes());
    cut.extend_from_slice(b"only this");
    let mut reader = BufReader::new(&cut[..]);
    let failed = next_entry(&mut reader, &mut Vec::new(), &mut Vec::new(), ROOMY).await;
    assert!(failed.is_err(), "{failed:?}");
}
