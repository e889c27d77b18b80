//! Build facts for `kinship --version`: the git commit the binary was built from and the target
//! triple it was built for.

use std::path::Path;
use std::process::Command;

fn main() {
    // The target is always known to a build script; the commit only in a git checkout (a
    // source tarball or `cargo install` from crates.io has none, and says `unknown`). A build
    // from an exported tree can name its commit in KINSHIP_GIT_COMMIT.
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=KINSHIP_TARGET={target}");
    // Without these, cargo would rerun the script on any change to the package's files.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KINSHIP_GIT_COMMIT");
    let commit = match std::env::var("KINSHIP_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=KINSHIP_GIT_COMMIT={commit}");
}

/// The short hash of HEAD, and a rerun whenever HEAD moves; None outside a git checkout or
/// without git.
fn git_commit() -> Option<String> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .args(args)
            .current_dir(&manifest_dir)
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    // Only a checkout whose top is this crate: a crate unpacked inside another repository must
    // not take that repository's commit.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != Path::new(&manifest_dir).canonicalize().ok()? {
        return None;
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD names a branch whose ref moves with each commit, loose or packed; in a worktree
    // these live in different git directories, which --git-path resolves. Only files that
    // exist are watched: cargo reruns a script whose watched file is missing on every build.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in &watched {
        if let Some(file) = git(&["rev-parse", "--git-path", name]) {
            let file = Path::new(&manifest_dir).join(file);
            if file.exists() {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
    }
    Some(commit)
}
