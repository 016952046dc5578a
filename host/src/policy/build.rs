//! `latchkey policy build`: compiles a policy crate to a component, the same
//! way every time, so that the same source gives the same sha256 on any
//! machine with the same toolchain and from any checkout path.
//!
//! What makes it reproducible:
//! * one set of release settings, passed on the command line so that the
//!   crate's own profile cannot change them: `opt-level = "s"`, fat LTO, one
//!   codegen unit, `panic = "abort"`, no debug info, symbols stripped;
//! * a fixed 64 KiB shadow stack;
//! * `--remap-path-prefix` for the workspace root and for Cargo's home, so no
//!   absolute path of this machine ends up in the module (panic locations, for
//!   instance);
//! * the lock file of the crate's workspace, and the toolchain pinned by its
//!   `rust-toolchain.toml`.
//!
//! The `wasm32-wasip2` target is installed with rustup when it is missing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::policy::ModuleHash;

/// The target policy modules are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// The release settings every module is built with (see the module docs).
const PROFILE: &[&str] = &[
    "profile.release.opt-level=\"s\"",
    "profile.release.lto=true",
    "profile.release.codegen-units=1",
    "profile.release.panic=\"abort\"",
    "profile.release.debug=false",
    "profile.release.strip=true",
    "profile.release.incremental=false",
    "profile.release.debug-assertions=false",
    "profile.release.overflow-checks=false",
];

/// The module's shadow-stack size, in bytes.
pub const STACK_BYTES: usize = 64 << 10;

/// How to build.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Cargo's target directory; the crate's default when `None`.
    pub target_dir: Option<PathBuf>,
    /// Capture Cargo's progress output and show it only if the build fails.
    pub quiet: bool,
}

/// A built module.
#[derive(Clone, Debug)]
pub struct Built {
    /// The package name.
    pub package: String,
    /// The module file in Cargo's target directory.
    pub path: PathBuf,
    /// Its sha256.
    pub hash: ModuleHash,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The directory has no Cargo.toml.
    #[error("{0} is not a policy crate: it has no Cargo.toml")]
    NotACrate(PathBuf),
    /// A tool could not be run.
    #[error("could not run {tool}: {error}")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// What went wrong.
        error: String,
    },
    /// The wasm32-wasip2 target is missing and could not be installed.
    #[error("the {TARGET} target is not installed and `rustup target add {TARGET}` failed: {0}")]
    Target(String),
    /// Cargo reported an error.
    #[error("cargo build failed{}", if .0.is_empty() { String::new() } else { format!(":\n{}", .0) })]
    Cargo(String),
    /// The build produced no component.
    #[error(
        "the build of {0} produced no .wasm file; a policy crate needs `crate-type = [\"cdylib\"]`"
    )]
    NoModule(String),
    /// The module could not be read back.
    #[error("could not read the built module {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
}

#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    filenames: Vec<PathBuf>,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    package_id: Option<String>,
}

#[derive(Deserialize)]
struct Target {
    kind: Vec<String>,
    name: String,
}

/// Builds the policy crate in `crate_dir`.
pub fn build(crate_dir: &Path, options: &BuildOptions) -> Result<Built, BuildError> {
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(BuildError::NotACrate(crate_dir.to_owned()));
    }
    let manifest = manifest
        .canonicalize()
        .map_err(|_| BuildError::NotACrate(crate_dir.to_owned()))?;
    let crate_dir = manifest.parent().unwrap_or(Path::new("."));
    let metadata = metadata(&manifest)?;
    let package = metadata
        .packages
        .iter()
        .find(|p| p.manifest_path == manifest)
        .map(|p| p.name.clone())
        .ok_or_else(|| BuildError::NotACrate(crate_dir.to_owned()))?;
    ensure_target(crate_dir)?;

    let mut cmd = Command::new(cargo());
    cmd.current_dir(crate_dir)
        .args(["build", "--release", "--target", TARGET, "-p", &package])
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--message-format", "json-render-diagnostics"]);
    for setting in PROFILE {
        cmd.args(["--config", setting]);
    }
    if let Some(dir) = &options.target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    cmd.env_remove("RUSTFLAGS")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            remap_flags(&metadata.workspace_root),
        )
        .stdout(Stdio::piped())
        .stderr(if options.quiet {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    let output = cmd.output().map_err(|e| BuildError::Tool {
        tool: "cargo",
        error: e.to_string(),
    })?;
    if !output.status.success() {
        return Err(BuildError::Cargo(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    let lib_name = package.replace('-', "_");
    let path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Message>(line).ok())
        .filter(|m| m.reason == "compiler-artifact")
        .filter(|m| {
            m.target
                .as_ref()
                .is_some_and(|t| t.name == lib_name && t.kind.iter().any(|k| k == "cdylib"))
        })
        .filter(|m| m.package_id.is_some())
        .flat_map(|m| m.filenames)
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| BuildError::NoModule(package.clone()))?;
    let bytes = std::fs::read(&path).map_err(|e| BuildError::Read {
        path: path.clone(),
        error: e.to_string(),
    })?;
    Ok(Built {
        package,
        hash: ModuleHash::of(&bytes),
        path,
    })
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn metadata(manifest: &Path) -> Result<Metadata, BuildError> {
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(manifest)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| BuildError::Tool {
            tool: "cargo metadata",
            error: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(BuildError::Cargo(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| BuildError::Tool {
        tool: "cargo metadata",
        error: e.to_string(),
    })
}

/// The compiler flags of every module build, as Cargo's
/// `CARGO_ENCODED_RUSTFLAGS` (separated by 0x1f): the stack size, and the
/// remapping that keeps this machine's paths out of the module.
fn remap_flags(workspace_root: &Path) -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut flags = vec![
        // A 64 KiB shadow stack instead of Rust's 1 MiB default: the whole
        // module then fits in the part of a pool slot the sandbox resets in
        // place, which halves the cost of a fresh instance (see sandbox.rs).
        // The stack sits first in memory, so an overflow traps rather than
        // corrupting data.
        format!("-Clink-arg=-zstack-size={STACK_BYTES}"),
        format!(
            "--remap-path-prefix={}=/latchkey/src",
            workspace_root.display()
        ),
    ];
    if let Some(home) = cargo_home {
        flags.push(format!(
            "--remap-path-prefix={}=/latchkey/cargo",
            home.display()
        ));
    }
    flags.join("\u{1f}")
}

/// Installs the wasm32-wasip2 target with rustup when the toolchain that
/// builds `crate_dir` does not have it.
fn ensure_target(crate_dir: &Path) -> Result<(), BuildError> {
    let libdir = Command::new("rustc")
        .current_dir(crate_dir)
        .args(["--print", "target-libdir", "--target", TARGET])
        .stderr(Stdio::null())
        .output();
    let installed = libdir.ok().filter(|o| o.status.success()).is_some_and(|o| {
        let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
    });
    if installed {
        return Ok(());
    }
    eprintln!("latchkey: installing the {TARGET} target with rustup");
    let status = Command::new("rustup")
        .current_dir(crate_dir)
        .args(["target", "add", TARGET])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| BuildError::Target(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Target(format!("rustup exited with {status}")))
    }
}
