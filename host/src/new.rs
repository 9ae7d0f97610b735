//! `wasp new` and `wasp build`: a plugin project from nothing, and its
//! component built with the right toolchain.
//!
//! `wasp new <rust|python|js> <name>` writes a project that builds on its
//! own, wherever it is: the SDK of its language and the WIT (`wit/esp.wit`)
//! are carried in this binary and written into the project, next to a
//! ~20-line service, a `wasp.toml` that serves it as cluster `<name>`, a
//! README with the commands, and `wasp-plugin.toml`, the marker `wasp
//! build` reads (language, name, where the component goes).
//!
//! `wasp build` runs `cargo build --release --target wasm32-wasip2` for
//! Rust (adding the target with rustup when it is missing) and copies the
//! result to `build/<name>.wasm`; for Python and JavaScript it runs the
//! project's `build.sh`, which installs its pinned toolchain on first use
//! under `$WASP_TOOLCHAIN_DIR` (default `~/.cache/wasp/toolchains`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The languages `wasp new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Python,
    Js,
}

impl Language {
    fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
        }
    }
}

/// What `wasp new` takes.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    wasp new python greeter && cd greeter && wasp build\n  \
    wasp new rust fax-relay --dir plugins/fax-relay")]
pub struct NewArgs {
    /// The language of the project.
    #[arg(value_enum)]
    pub language: Language,
    /// The project's name: lowercase letters, digits and dashes, starting
    /// with a letter (e.g. `greeter`). It names the folder, the cluster
    /// and the component; the service type is its CamelCase (`Greeter`).
    pub name: String,
    /// Where to write the project (default: `./<name>`); it must not exist
    /// or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// What `wasp build` takes.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The project folder (default: the current one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The marker `wasp new` writes and `wasp build` reads.
pub const MARKER: &str = "wasp-plugin.toml";

const WIT: &str = include_str!("../../wit/esp.wit");
const RUST_SDK: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../plugins/sdk/src/lib.rs")),
    ("kv.rs", include_str!("../../plugins/sdk/src/kv.rs")),
    ("http.rs", include_str!("../../plugins/sdk/src/http.rs")),
];
const RUST_SDK_MANIFEST: &str = include_str!("../templates/sdk-Cargo.toml");
/// The guest workspace's lock: a new Rust project builds with the versions
/// wasp's own plugins are tested with.
const RUST_LOCK: &str = include_str!("../../plugins/Cargo.lock");
const RUST_MANIFEST: &str = include_str!("../templates/Cargo.toml");
const RUST_LIB: &str = include_str!("../templates/lib.rs");
const PYTHON_SDK: &str = include_str!("../../sdk/python/wasp_sdk/__init__.py");
const PYTHON_APP: &str = include_str!("../templates/app.py");
const PYTHON_BUILD: &str = include_str!("../../examples/plugins/python/build.sh");
const JS_SDK: &str = include_str!("../../sdk/js/wasp-sdk.js");
const JS_APP: &str = include_str!("../templates/app.js");
const JS_BUILD: &str = include_str!("../../examples/plugins/js/build.sh");
const JS_PACKAGE: &str = include_str!("../../examples/plugins/js/package.json");
const JS_LOCK: &str = include_str!("../../examples/plugins/js/package-lock.json");
const CONFIG: &str = include_str!("../templates/wasp.toml");
const README: &str = include_str!("../templates/README.md");

/// Why a project name is refused, or `None` when it is fine.
pub fn invalid_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 40 {
        return Some("it must be 1 to 40 characters long");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("it must start with a lowercase letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some("only lowercase letters, digits and '-' are allowed");
    }
    if name.ends_with('-') || name.contains("--") {
        return Some("a '-' must sit between letters or digits");
    }
    None
}

/// The service type for a project name: `fax-relay` -> `FaxRelay`.
pub fn service_type(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// The files of a new project, relative paths and contents.
pub fn project_files(language: Language, name: &str) -> Vec<(String, String)> {
    let service = service_type(name);
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{Service}}", &service)
    };
    let mut files: Vec<(String, String)> = vec![("wit/esp.wit".into(), WIT.into())];
    let (source, memory) = match language {
        Language::Rust => {
            files.push(("Cargo.toml".into(), fill(RUST_MANIFEST)));
            files.push(("Cargo.lock".into(), RUST_LOCK.into()));
            files.push(("src/lib.rs".into(), fill(RUST_LIB)));
            files.push(("wasp-sdk/Cargo.toml".into(), RUST_SDK_MANIFEST.into()));
            for (file, text) in RUST_SDK {
                // In wasp's repository the SDK sits two folders below the
                // WIT; here it sits one below.
                let text = text.replace(r#"path: "../../wit""#, r#"path: "../wit""#);
                files.push((format!("wasp-sdk/src/{file}"), text));
            }
            files.push((".gitignore".into(), "/target\n/build\n".into()));
            ("src/lib.rs", 64)
        }
        Language::Python => {
            files.push(("app.py".into(), fill(PYTHON_APP)));
            files.push(("wasp_sdk/__init__.py".into(), PYTHON_SDK.into()));
            files.push(("build.sh".into(), set_name(PYTHON_BUILD, name)));
            files.push((".gitignore".into(), "/build\n__pycache__/\n".into()));
            ("app.py", 256)
        }
        Language::Js => {
            files.push(("app.js".into(), fill(JS_APP)));
            files.push(("wasp-sdk.js".into(), JS_SDK.into()));
            files.push(("build.sh".into(), set_name(JS_BUILD, name)));
            files.push(("package.json".into(), JS_PACKAGE.into()));
            files.push(("package-lock.json".into(), JS_LOCK.into()));
            files.push((".gitignore".into(), "/build\n/node_modules\n".into()));
            ("app.js", 128)
        }
    };
    files.push((
        "wasp.toml".into(),
        fill(CONFIG).replace("{{memory}}", &memory.to_string()),
    ));
    files.push((
        MARKER.into(),
        format!(
            "# Written by `wasp new`: what `wasp build` builds here.\n\
             language = \"{}\"\nname = \"{name}\"\ncomponent = \"build/{name}.wasm\"\n",
            language.as_str()
        ),
    ));
    let mut listed: Vec<String> = files.iter().map(|(path, _)| format!("`{path}`")).collect();
    listed.push("`README.md`".into());
    let language_name = match language {
        Language::Rust => "Rust",
        Language::Python => "Python",
        Language::Js => "JavaScript",
    };
    files.push((
        "README.md".into(),
        fill(README)
            .replace("{{Language}}", language_name)
            .replace("{{language}}", language.as_str())
            .replace("{{source}}", source)
            .replace("{{files}}", &listed.join(", ")),
    ));
    files
}

/// The build script with the component's name set.
fn set_name(script: &str, name: &str) -> String {
    script
        .lines()
        .map(|line| {
            if line.starts_with("NAME=") {
                format!("NAME={name}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `wasp new`.
pub fn new(args: NewArgs) -> Result<()> {
    if let Some(why) = invalid_name(&args.name) {
        bail!(
            "'{}' is not a project name: {why} (e.g. greeter, fax-relay)",
            args.name
        );
    }
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .with_context(|| format!("{} exists and is not a readable folder", dir.display()))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "{} already exists and is not empty: give another name or --dir",
                dir.display()
            );
        }
    }
    for (path, text) in project_files(args.language, &args.name) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        if path.file_name().is_some_and(|n| n == "build.sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    let shown = dir.display();
    println!(
        "wrote a {} project for service {} into {shown}",
        args.language.as_str(),
        service_type(&args.name)
    );
    println!("next:");
    println!("  cd {shown}");
    println!("  wasp build");
    println!(
        "  wasp call build/{}.wasm Greet --param Name=Ada",
        args.name
    );
    println!("  wasp run wasp.toml");
    Ok(())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker {
    language: Language,
    name: String,
    component: PathBuf,
}

/// Reads the project's marker, or guesses from its files.
fn project(dir: &Path) -> Result<Marker> {
    let marker = dir.join(MARKER);
    if marker.is_file() {
        let text = std::fs::read_to_string(&marker)
            .with_context(|| format!("cannot read {}", marker.display()))?;
        return toml::from_str(&text).with_context(|| format!("{} is not valid", marker.display()));
    }
    bail!(
        "{} has no {MARKER}: `wasp build` builds projects written by `wasp new` \
         (run it in the project's folder or give --dir)",
        dir.display()
    )
}

/// `wasp build`: builds the project and prints where the component is.
pub fn build(args: BuildArgs) -> Result<()> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let project = project(&dir)?;
    if invalid_name(&project.name).is_some() {
        bail!("{MARKER}: '{}' is not a project name", project.name);
    }
    let component = dir.join(&project.component);
    let start = Instant::now();
    match project.language {
        Language::Rust => build_rust(&dir, &project.name, &component)?,
        Language::Python | Language::Js => build_script(&dir, project.language, &component)?,
    }
    eprintln!(
        "wasp build: {} built in {:.1} s",
        project.name,
        start.elapsed().as_secs_f64()
    );
    println!("{}", component.display());
    Ok(())
}

fn build_rust(dir: &Path, name: &str, component: &Path) -> Result<()> {
    ensure_wasm_target()?;
    eprintln!(
        "wasp build: cargo build --release --target wasm32-wasip2 (the first build takes about a minute)"
    );
    let status = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir)
        .status()
        .context("cannot run cargo: is Rust installed (https://rustup.rs)?")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_relative() { dir.join(d) } else { d })
        .unwrap_or_else(|| dir.join("target"));
    let built = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let bytes =
        std::fs::read(&built).with_context(|| format!("cargo built no {}", built.display()))?;
    // Written only when it changed, and whole (rename), so a wasp that
    // watches it reloads once, and only when there is something new.
    if std::fs::read(component).ok().as_deref() != Some(&bytes[..]) {
        if let Some(parent) = component.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = component.with_extension("wasm.tmp");
        std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, component)?;
    }
    Ok(())
}

/// Adds the `wasm32-wasip2` target with rustup when it is missing.
fn ensure_wasm_target() -> Result<()> {
    let Ok(output) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        bail!("cannot run rustc: is Rust installed (https://rustup.rs)?");
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if sysroot.join("lib/rustlib/wasm32-wasip2").is_dir() {
        return Ok(());
    }
    eprintln!("wasp build: adding the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
    let start = Instant::now();
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .context("the wasm32-wasip2 target is missing and rustup cannot be run to add it")?;
    if !status.success() {
        bail!("rustup target add wasm32-wasip2 failed ({status})");
    }
    eprintln!(
        "wasp build: added wasm32-wasip2 in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn build_script(dir: &Path, language: Language, component: &Path) -> Result<()> {
    let script = dir.join("build.sh");
    if !script.is_file() {
        bail!("{} is missing (`wasp new` writes it)", script.display());
    }
    let (tool, hint) = match language {
        Language::Python => ("python3", "Python 3.10 or later"),
        _ => ("npm", "Node.js 18 or later with npm"),
    };
    if Command::new(tool).arg("--version").output().is_err() {
        bail!(
            "{tool} is not on PATH: building a {} plugin needs {hint}",
            language.as_str()
        );
    }
    let out_dir = component
        .parent()
        .context("the component path has no folder")?;
    let status = Command::new("bash")
        .arg(&script)
        .current_dir(dir)
        .env("WASP_OUT_DIR", out_dir)
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    if !component.is_file() {
        bail!("{} wrote no {}", script.display(), component.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["greeter", "fax-relay", "a1", "im2-bridge"] {
            assert_eq!(invalid_name(good), None, "{good}");
        }
        for bad in [
            "",
            "Greeter",
            "1fax",
            "fax_relay",
            "fax-",
            "a--b",
            "a b",
            "../x",
        ] {
            assert!(invalid_name(bad).is_some(), "{bad:?}");
        }
        assert_eq!(service_type("fax-relay"), "FaxRelay");
        assert_eq!(service_type("greeter"), "Greeter");
    }

    #[test]
    fn every_template_is_filled() {
        for language in [Language::Rust, Language::Python, Language::Js] {
            let files = project_files(language, "fax-relay");
            for (path, text) in &files {
                assert!(!text.contains("{{"), "{path} keeps a placeholder");
            }
            // The config is valid once the component is built.
            let config = &files.iter().find(|(p, _)| p == "wasp.toml").unwrap().1;
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("build")).unwrap();
            std::fs::write(dir.path().join("build/fax-relay.wasm"), b"").unwrap();
            let config = crate::config::Config::parse(config, dir.path()).unwrap();
            assert_eq!(config.clusters["fax-relay"].service, "FaxRelay");
        }
        let rust = project_files(Language::Rust, "greeter");
        let lib = &rust
            .iter()
            .find(|(p, _)| p == "wasp-sdk/src/lib.rs")
            .unwrap()
            .1;
        assert!(
            lib.contains(r#"path: "../wit""#),
            "the SDK binds the project's WIT"
        );
        let python = project_files(Language::Python, "greeter");
        let script = &python.iter().find(|(p, _)| p == "build.sh").unwrap().1;
        assert!(script.contains("\nNAME=greeter\n"));
    }
}
