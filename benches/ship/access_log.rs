//! A deterministic file of Apache combined-format access-log lines, cached under `target/` so
//! that runs with the same line count read the very same bytes.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::Context;

/// Bumped whenever the generator changes, so that stale cached files are not reused.
const FORMAT_VERSION: u32 = 1;
const SEED: u64 = 0x6b69_6e73_6869_7021;

/// A generated log file.
pub struct AccessLog {
    pub path: PathBuf,
    pub lines: u64,
    pub bytes: u64,
}

/// Returns the cached file for `lines` lines in `cache_dir`, generating it first if needed.
pub fn cached(cache_dir: &Path, lines: u64) -> Result<AccessLog, String> {
    let path = cache_dir.join(format!("access-v{FORMAT_VERSION}-{lines}.log"));
    if !path.exists() {
        eprintln!(
            "generating {lines} access-log lines into {}",
            path.display()
        );
        // Written under another name and renamed, so an interrupted run never leaves a short
        // file behind that a later run would take for complete.
        let partial = path.with_extension("log.partial");
        let file = File::create(&partial).context(format!("creating {}", partial.display()))?;
        write_lines(BufWriter::with_capacity(1 << 20, file), lines)
            .context(format!("writing {}", partial.display()))?;
        fs::rename(&partial, &path).context(format!("renaming {}", partial.display()))?;
    }
    let bytes = fs::metadata(&path)
        .context(format!("reading the size of {}", path.display()))?
        .len();
    Ok(AccessLog { path, lines, bytes })
}

fn write_lines(mut out: BufWriter<File>, lines: u64) -> io::Result<()> {
    let mut rng = SplitMix64(SEED);
    for index in 0..lines {
        write_line(&mut out, &mut rng, seconds_of_day(index, lines))?;
    }
    out.into_inner()
        .map_err(|error| error.into_error())?
        .sync_all()
}

/// Spreads the lines evenly over one day so timestamps rise like a real log's.
fn seconds_of_day(index: u64, lines: u64) -> u64 {
    index * 86_400 / lines.max(1)
}

const METHODS: &[&str] = &[
    "GET", "GET", "GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "HEAD",
];
const STATUSES: &[u16] = &[
    200, 200, 200, 200, 200, 200, 200, 200, 304, 304, 301, 302, 201, 404, 404, 500, 503,
];
const USERS: &[&str] = &["-", "-", "-", "-", "-", "-", "alice", "bob", "svc-batch"];
const WORDS: &[&str] = &[
    "shoes", "laptop", "coffee", "garden", "kinesis", "lamp", "guitar", "camera", "tent", "bicycle",
];
const REFERRERS: &[&str] = &[
    "-",
    "-",
    "https://www.example.com/",
    "https://www.example.com/products/catalog?page=2",
    "https://search.example.org/search?q=best+deals",
    "https://news.example.net/articles/2025/11/shopping-guide",
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Prometheus/2.54.1",
];

fn write_line(out: &mut impl Write, rng: &mut SplitMix64, seconds: u64) -> io::Result<()> {
    let status = *rng.pick(STATUSES);
    let size = if status == 304 { 0 } else { rng.below(60_000) };
    write!(
        out,
        "{}.{}.{}.{} - {} [23/Nov/2025:{:02}:{:02}:{:02} +0000] \"{} ",
        1 + rng.below(223),
        rng.below(256),
        rng.below(256),
        1 + rng.below(254),
        rng.pick(USERS),
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        rng.pick(METHODS),
    )?;
    write_path(out, rng)?;
    writeln!(
        out,
        " HTTP/1.1\" {status} {size} \"{}\" \"{}\"",
        rng.pick(REFERRERS),
        rng.pick(USER_AGENTS),
    )
}

fn write_path(out: &mut impl Write, rng: &mut SplitMix64) -> io::Result<()> {
    match rng.below(8) {
        0 => write!(out, "/"),
        1 => write!(out, "/api/v1/users/{}/profile", rng.below(1_000_000)),
        2 => write!(
            out,
            "/api/v1/orders/{}/items?page={}",
            rng.below(10_000_000),
            rng.below(20)
        ),
        3 => write!(out, "/static/js/app.{:08x}.js", rng.next() as u32),
        4 => write!(out, "/images/products/{}/large.jpg", rng.below(100_000)),
        5 => write!(out, "/search?q={}&sort=price&limit=50", rng.pick(WORDS)),
        6 => write!(out, "/checkout/cart?session={:016x}", rng.next()),
        _ => write!(out, "/health"),
    }
}

/// A tiny fixed generator, so the file stays byte-identical whatever crate versions change.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The lines of `log` dealt into `files` files of consecutive lines (the first files take one
/// line more when the count does not divide evenly), cached beside it like the log itself.
pub fn split(log: &AccessLog, files: u64, cache_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let dir = cache_dir.join(format!("access-v{FORMAT_VERSION}-{}-in-{files}", log.lines));
    let paths: Vec<PathBuf> = (0..files)
        .map(|index| dir.join(format!("part-{index:05}.log")))
        .collect();
    if dir.exists() {
        return Ok(paths);
    }
    eprintln!(
        "dealing {} lines into {files} files in {}",
        log.lines,
        dir.display()
    );
    // Built under another name and renamed, like the log, so a half-written set is never used.
    let partial = dir.with_extension("partial");
    if partial.exists() {
        fs::remove_dir_all(&partial).context(format!("removing {}", partial.display()))?;
    }
    fs::create_dir_all(&partial).context(format!("creating {}", partial.display()))?;
    let input = File::open(&log.path).context(format!("opening {}", log.path.display()))?;
    let mut lines = io::BufReader::with_capacity(1 << 20, input);
    let mut line = Vec::new();
    for index in 0..files {
        let count = log.lines / files + u64::from(index < log.lines % files);
        let path = partial.join(format!("part-{index:05}.log"));
        let file = File::create(&path).context(format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(file);
        for _ in 0..count {
            line.clear();
            io::BufRead::read_until(&mut lines, b'\n', &mut line)
                .context(format!("reading {}", log.path.display()))?;
            out.write_all(&line)
                .context(format!("writing {}", path.display()))?;
        }
        out.flush().context(format!("writing {}", path.display()))?;
    }
    fs::rename(&partial, &dir).context(format!("renaming {}", partial.display()))?;
    Ok(paths)
}
