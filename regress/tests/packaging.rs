//! The OpenBSD integration files: man pages, rc.d scripts, the example
//! configuration, Makefile.bsd and the port. These check them against the
//! code so that a new command, keyword or pledge cannot go undocumented.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const MAN_PAGES: [&str; 3] = ["man/iscsid.8", "man/iscsictl.8", "man/iscsi.conf.5"];
const RC_SCRIPT: &str = "etc/rc.d/iscsid";
const PORT: &str = "ports/sysutils/iscsid";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("regress/ has a parent")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every "..." literal in `text`, without escapes (none are needed here).
fn string_literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        out.push(after[..end].to_owned());
        rest = &after[end + 1..];
    }
    out
}

/// The text between `start` and the first `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// The words an mdoc page marks with `Ic`: every token after an `Ic`
/// macro up to the next macro, on macro lines.
fn ic_words(page: &str) -> BTreeSet<String> {
    let is_macro = |t: &str| {
        t.len() == 2
            && t.starts_with(|c: char| c.is_ascii_uppercase())
            && t.chars().all(|c| c.is_ascii_alphabetic())
    };
    let mut words = BTreeSet::new();
    for line in page.lines().filter(|l| l.starts_with('.')) {
        let mut in_ic = false;
        for tok in line[1..].split_whitespace() {
            if tok == "Ic" {
                in_ic = true;
            } else if is_macro(tok) {
                in_ic = false;
            } else if in_ic {
                words.insert(tok.trim_matches(|c| ",.;:|()".contains(c)).to_owned());
            }
        }
    }
    words
}

/// The rust sources of the programs that ship.
fn shipped_sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for krate in ["common", "iscsid", "iscsictl"] {
        walk(&root().join(krate).join("src"), &mut out);
    }
    out.sort();
    out
}

#[test]
fn man_pages_pass_mandoc_lint() {
    for page in MAN_PAGES {
        let out = Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning"])
            .arg(root().join(page))
            .output()
            .unwrap_or_else(|e| panic!("mandoc: {e} (regress/setup.sh installs it)"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.is_empty(),
            "{page}: {}\n{text}",
            out.status
        );
    }
}

#[test]
fn string_helpers_find_what_they_should() {
    assert_eq!(string_literals(r#"f("a b", x, "c")"#), ["a b", "c"]);
    assert_eq!(string_literals(r#"no "end"#), Vec::<String>::new());
    assert_eq!(between("x [1, 2] y", "[", "]"), Some("1, 2"));
    assert_eq!(between("x [1, 2 y", "[", "]"), None);
    let words = ic_words(".It Ic show vscsi stats\n.It Ic discover Ar address\nIc no\n");
    let want: BTreeSet<String> = ["show", "vscsi", "stats", "discover"]
        .map(String::from)
        .into();
    assert_eq!(words, want);
    let words = ic_words(".It Ic disabled Ns | Ns Ic enabled\n.Ic inet4 ,\n");
    assert!(
        words.contains("enabled") && words.contains("inet4"),
        "{words:?}"
    );
}

#[test]
fn every_pledge_is_known_to_pledge_and_documented() {
    let pages = format!("{}{}", read("man/iscsid.8"), read("man/iscsictl.8"));
    let mut found = BTreeMap::new();
    for path in shipped_sources() {
        let text = fs::read_to_string(&path).expect("source");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("sandbox::pledge(") {
            rest = &rest[at + "sandbox::pledge(".len()..];
            let arg = rest.split(')').next().unwrap_or_default().trim();
            let promises = arg
                .strip_prefix('"')
                .and_then(|a| a.strip_suffix('"'))
                .unwrap_or_else(|| {
                    panic!("{}: pledge argument {arg} is not a literal", path.display())
                });
            found.insert(promises.to_owned(), path.clone());
        }
    }
    // The parent, the engine and iscsictl each pledge.
    assert!(found.len() >= 3, "pledge calls found: {found:?}");
    for (promises, path) in &found {
        if let Err(e) = common::sandbox::check_promises(promises) {
            panic!("{}: {e}", path.display());
        }
        assert!(
            pages.contains(&format!(".Qq {promises}")),
            "{}: pledge \"{promises}\" is not in iscsid.8 or iscsictl.8",
            path.display()
        );
    }
}

#[test]
fn every_iscsictl_command_is_documented() {
    let parser = read("iscsictl/src/parser.rs");
    let code = parser.split("#[cfg(test)]").next().unwrap_or_default();
    let mut words = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("pick(") {
        let definition = rest[..at].ends_with("fn ");
        rest = &rest[at + "pick(".len()..];
        if let (false, Some(list)) = (definition, between(rest, "&[", "]")) {
            words.extend(string_literals(list));
        }
    }
    for w in ["reload", "discover", "show", "log", "verbose", "stats"] {
        assert!(words.contains(w), "{w} not found in parser.rs: {words:?}");
    }
    let documented = ic_words(&read("man/iscsictl.8"));
    let missing: Vec<_> = words.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "iscsictl.8 lacks .It Ic entries for {missing:?}"
    );
}

/// The spellings of the lexer's keyword table.
fn config_keywords() -> Vec<String> {
    let lexer = read("common/src/config/lexer.rs");
    let table = between(&lexer, "const KEYWORDS", "];").expect("KEYWORDS table in lexer.rs");
    let words: Vec<String> = string_literals(table);
    assert!(words.len() >= 20, "too few keywords found: {words:?}");
    words
}

#[test]
fn every_config_keyword_and_value_is_documented() {
    let documented = ic_words(&read("man/iscsi.conf.5"));
    let mut wanted = config_keywords();
    // Words of parameter lines that are not keywords of the lexer.
    let params = read("common/src/config/params.rs");
    for table in ["const DIGESTS", "const ALGORITHMS", "const BOOLS"] {
        let t = between(&params, table, "];").unwrap_or_else(|| panic!("{table} in params.rs"));
        let values: Vec<String> = string_literals(t);
        assert!(!values.is_empty(), "{table} is empty");
        wanted.extend(values);
    }
    let chap = between(&params, "const SUB", ";").expect("chap sub-keywords in params.rs");
    wanted.extend(string_literals(chap));
    wanted.push("secret".into());
    for isid in ["oui", "en", "rand"] {
        wanted.push(isid.into());
    }
    let missing: Vec<_> = wanted.iter().filter(|w| !documented.contains(*w)).collect();
    assert!(missing.is_empty(), "iscsi.conf.5 lacks Ic {missing:?}");
}

#[test]
fn rc_scripts_are_valid_sh_and_agree() {
    let port_rc = format!("{PORT}/pkg/iscsid_rs.rc");
    for script in [RC_SCRIPT, port_rc.as_str()] {
        let out = Command::new("sh")
            .arg("-n")
            .arg(root().join(script))
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ours = read(RC_SCRIPT);
    let port = read(&port_rc).replace("${TRUEPREFIX}", "/usr/local");
    assert_eq!(ours, port, "etc/rc.d/iscsid and {port_rc} differ");
    // The decisions iscsid.8 documents.
    assert!(ours.contains("\nrc_stop=NO\n"), "stop must be refused");
    assert!(!ours.contains("rc_reload=NO"));
    assert!(ours.contains("rc_reload() {\n\t${control} reload\n}"));
    assert!(ours.contains("rc_exec \"${daemon} ${daemon_flags} && ${control} reload\""));
    assert!(ours.contains("daemon=\"/usr/local/sbin/iscsid\""));
}

/// The example with the leading '#' of its configuration lines removed;
/// prose comments start with "# " and stay.
fn uncommented_example() -> String {
    read("etc/iscsi.conf")
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with(' ') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_config_is_inert_and_valid_when_uncommented() {
    use common::config::{parse_str, SessionType};
    let as_shipped = parse_str(&read("etc/iscsi.conf"), "iscsi.conf").expect("example");
    assert!(as_shipped.targets.is_empty() && as_shipped.isid.is_none());

    let text = uncommented_example();
    let cfg = parse_str(&text, "iscsi.conf")
        .unwrap_or_else(|e| panic!("uncommented example: {e:?}\n{text}"));
    let names: Vec<&str> = cfg.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["data", "logs", "lab", "spare"]);
    assert_eq!(cfg.targets[2].session_type, SessionType::Discovery);
    assert!(cfg.targets[3].disabled && !cfg.targets[0].disabled);
    assert!(cfg.targets[1].params.chap_mutual.is_some());
    assert_eq!(cfg.targets[0].params.queue_depth, Some(64));
    assert_eq!(cfg.targets[1].params.queue_depth, Some(16));
    // It shows every keyword but the reserved one; include is described
    // in prose so that the example never names a missing file.
    let words: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(str::split_whitespace)
        .collect();
    for k in config_keywords() {
        if k != "address" && k != "include" {
            assert!(words.contains(k.as_str()), "example lacks {k}");
        }
    }
}

#[test]
fn install_lists_name_every_man_page() {
    let makefile = read("Makefile.bsd");
    let port = read(&format!("{PORT}/Makefile"));
    let plist = read(&format!("{PORT}/pkg/PLIST"));
    let mut pages: Vec<String> = fs::read_dir(root().join("man"))
        .expect("man/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(pages, ["iscsi.conf.5", "iscsictl.8", "iscsid.8"]);
    for p in &pages {
        let section = p.rsplit('.').next().unwrap_or_default();
        assert!(makefile.contains(&format!("man/{p}")), "Makefile.bsd: {p}");
        assert!(port.contains(&format!("man/{p}")), "port Makefile: {p}");
        assert!(
            plist.contains(&format!("@man man/man{section}/{p}\n")),
            "PLIST: {p}"
        );
    }
    for f in [
        "@bin sbin/iscsid\n",
        "@bin sbin/iscsictl\n",
        "@rcscript ${RCDIR}/iscsid_rs\n",
    ] {
        assert!(plist.contains(f), "PLIST lacks {f}");
    }
    assert!(port.contains("ISCSID_USER=_iscsirs"));
    assert!(plist.contains("@newuser _iscsirs:"));
}

/// (name, version) of every crates.io package in Cargo.lock.
fn locked_crates() -> BTreeSet<(String, String)> {
    let lock = read("Cargo.lock");
    let mut out = BTreeSet::new();
    for pkg in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            pkg.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().trim_matches('"').to_owned())
        };
        let registry = field("source = ").is_some_and(|s| s.starts_with("registry+"));
        if let (true, Some(n), Some(v)) = (registry, field("name = "), field("version = ")) {
            out.insert((n, v));
        }
    }
    out
}

#[test]
fn crates_inc_matches_cargo_lock() {
    let inc = read(&format!("{PORT}/crates.inc"));
    let listed: BTreeSet<(String, String)> = inc
        .lines()
        .filter_map(|l| l.strip_prefix("MODCARGO_CRATES +="))
        .map(|l| {
            let mut f = l.split_whitespace();
            let n = f.next().unwrap_or_default().to_owned();
            let v = f.next().unwrap_or_default().to_owned();
            (n, v)
        })
        .collect();
    let locked = locked_crates();
    assert!(locked.iter().any(|(n, _)| n == "nix"), "{locked:?}");
    assert_eq!(
        listed, locked,
        "crates.inc is stale: run ports/update-crates.sh"
    );
}

/// The rules of a BSD makefile: target name to (prerequisites, recipe
/// lines with continuations joined).
fn make_rules(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut rules = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut joined = String::new();
    for line in text.lines() {
        if let Some(cont) = joined.strip_suffix('\\') {
            joined = format!("{cont} {}", line.trim());
        } else {
            joined = line.to_owned();
        }
        if joined.ends_with('\\') {
            continue;
        }
        let l = std::mem::take(&mut joined);
        if let Some(cmd) = l.strip_prefix('\t') {
            if let Some(t) = &current {
                if let Some(r) = rules.get_mut(t) {
                    let (_, recipe): &mut (String, Vec<String>) = r;
                    recipe.push(cmd.trim().to_owned());
                }
            }
            continue;
        }
        current = None;
        if l.starts_with('#') || l.starts_with('.') || l.contains('=') {
            continue;
        }
        if let Some((target, prereqs)) = l.split_once(':') {
            let target = target.trim().to_owned();
            rules.insert(target.clone(), (prereqs.trim().to_owned(), Vec::new()));
            current = Some(target);
        }
    }
    rules
}

#[test]
fn makefile_bsd_install_installs_what_all_built_and_runs_no_cargo() {
    let rules = make_rules(&read("Makefile.bsd"));
    let (all_pre, all) = &rules["all"];
    assert!(all_pre.is_empty(), "all: {all_pre}");
    assert!(
        all.iter().any(|c| c.contains("${CARGO} build --release")),
        "all does not build: {all:?}"
    );
    // As in bsd.prog.mk, install does not depend on all: "doas make
    // install" must not run cargo, and so the crates' build scripts, as
    // root.
    let (pre, install) = &rules["install"];
    assert!(pre.is_empty(), "install depends on {pre:?}");
    assert!(install.len() > 3, "{install:?}");
    for cmd in install {
        assert!(
            !cmd.contains("CARGO") && !cmd.contains("cargo"),
            "install runs cargo: {cmd}"
        );
        assert!(!cmd.contains("${MAKE}"), "install runs make: {cmd}");
    }
    // The first step refuses a missing build with a clear message.
    assert!(install[0].contains("for f in ${_BUILT}"), "{}", install[0]);
    assert!(
        install[0].contains("is missing: build first"),
        "{}",
        install[0]
    );
    // Everything installed from the build directory is in _BUILT.
    let built = read("Makefile.bsd");
    let built = between(&built, "_BUILT =", "\n").expect("_BUILT");
    for cmd in install {
        for word in cmd.split_whitespace() {
            if let Some(f) = word.strip_prefix("${_RELEASE}/") {
                assert!(built.contains(&format!("${{_RELEASE}}/{f}")), "{f}");
            }
        }
    }
}

/// Runs `bmake -f Makefile.bsd target vars...` in the source tree, with
/// the build directory, DESTDIR and cargo replaced by ones under `tmp`.
fn bmake(tmp: &Path, target: &str, vars: &[String]) -> std::process::Output {
    Command::new("bmake")
        .current_dir(root())
        .arg("-f")
        .arg(root().join("Makefile.bsd"))
        .arg(target)
        .arg(format!("CARGO_TARGET_DIR={}", tmp.join("target").display()))
        .arg(format!("DESTDIR={}", tmp.join("dest").display()))
        .arg(format!("CARGO={}", tmp.join("cargo").display()))
        .arg("INSTALL_STRIP=")
        .args(vars)
        .output()
        .expect("bmake")
}

#[test]
fn makefile_bsd_install_without_a_build_fails_and_never_builds() {
    if Command::new("bmake").arg("-V").arg("x").output().is_err() {
        // Debian's bmake runs the makefile as OpenBSD's make would.
        eprintln!("bmake is not installed; only the static checks ran");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::env::temp_dir().join(format!("packaging-bmake-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).expect("tmp");
    // A cargo that records that it ran and builds two scripts.
    let mark = tmp.join("cargo-ran");
    let cargo = format!(
        "#!/bin/sh\necho \"$@\" >>{mark}\nmkdir -p \"$CARGO_TARGET_DIR/release\"\n\
         for p in iscsid iscsictl; do printf '#!/bin/sh\\n' >\"$CARGO_TARGET_DIR/release/$p\"; done\n",
        mark = mark.display()
    );
    fs::write(tmp.join("cargo"), cargo).expect("cargo");
    fs::set_permissions(tmp.join("cargo"), fs::Permissions::from_mode(0o755)).expect("chmod");

    let out = bmake(&tmp, "install", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "install without a build succeeded");
    assert!(
        err.contains("iscsid is missing: build first with \"make -f Makefile.bsd\" (not as root)"),
        "{err}"
    );
    assert!(!mark.exists(), "install ran cargo");
    assert!(
        !tmp.join("dest").exists(),
        "install without a build installed something"
    );

    let out = bmake(&tmp, "all", &["BINDIR=/opt/sbin".into()]);
    assert!(
        out.status.success(),
        "all: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args = fs::read_to_string(&mark).expect("all ran cargo");
    assert!(
        args.contains("build --release --locked -p iscsid -p iscsictl"),
        "{args}"
    );
    fs::remove_file(&mark).expect("mark");

    let out = bmake(&tmp, "install", &["BINDIR=/opt/sbin".into()]);
    assert!(
        out.status.success(),
        "install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!mark.exists(), "install ran cargo");
    let dest = tmp.join("dest");
    for f in [
        "opt/sbin/iscsid",
        "opt/sbin/iscsictl",
        "usr/local/man/man8/iscsid.8",
        "usr/local/man/man8/iscsictl.8",
        "usr/local/man/man5/iscsi.conf.5",
        "usr/local/share/examples/iscsid/iscsi.conf",
    ] {
        assert!(dest.join(f).is_file(), "{f} not installed");
    }
    let rc = fs::read_to_string(dest.join("etc/rc.d/iscsid_rs")).expect("rc.d script");
    assert!(rc.contains("daemon=\"/opt/sbin/iscsid\""), "{rc}");
    assert!(rc.contains("control=\"/opt/sbin/iscsictl\""), "{rc}");
    let _ = fs::remove_dir_all(&tmp);
}

/// The last ids of infrastructure/db/user.list, OpenBSD ports, revision
/// 1.490 (2026/06/06, read from a copy of the ports tree); the list starts
/// at 500. 899, the id the port first had, is among them. The port's id
/// must be none of these.
const TAKEN_PORT_IDS: &[(u32, &str)] = &[
    (880, "_gotosocial (retired)"),
    (881, "_opensearch"),
    (882, "_opensearch-dashboards"),
    (883, "_step-ca"),
    (884, "_iblock"),
    (885, "_mycorrhiza"),
    (886, "_eduvpn"),
    (887, "_endlessh"),
    (888, "_epmd"),
    (889, "_gromox"),
    (890, "_grommunio"),
    (891, "_kiwix-serve"),
    (892, "_shiori"),
    (893, "_azorius"),
    (894, "_gonic"),
    (895, "_soju"),
    (896, "_certspotter"),
    (897, "_croc"),
    (898, "_icingadb"),
    (899, "_openhab"),
    (900, "_z2m"),
    (901, "_ergo"),
    (902, "_hylafax"),
    (903, "_iaxmodem"),
    (904, "_neighbot"),
    (905, "_pgweb"),
    (908, "_simplexmq"),
];
/// The highest id of that list; 906 and 907 were skipped, perhaps held
/// for ports under review, so the port takes an id above it.
const LAST_PORT_ID: u32 = 908;

#[test]
fn port_user_has_a_free_fixed_id() {
    let plist = read(&format!("{PORT}/pkg/PLIST"));
    let port = read(&format!("{PORT}/Makefile"));
    let field = |prefix: &str| -> u32 {
        let rest = plist
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("PLIST lacks {prefix}"));
        rest.split(':')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad id in {prefix}{rest}"))
    };
    let gid = field("@newgroup _iscsirs:");
    let uid = field("@newuser _iscsirs:");
    assert_eq!(uid, gid, "a user/group pair shares one id");
    assert!(
        plist.contains(&format!("@newuser _iscsirs:{uid}:_iscsirs:")),
        "the user's group is _iscsirs"
    );
    for (id, name) in TAKEN_PORT_IDS {
        assert_ne!(uid, *id, "{uid} is {name} in user.list");
    }
    assert!(uid > LAST_PORT_ID && uid < 1000, "{uid}");
    // The Makefile says how it was chosen and what to add to user.list.
    assert!(
        port.contains(&format!("\"{uid} _iscsirs _iscsirs sysutils/iscsid\"")),
        "the port Makefile does not give the user.list line for {uid}"
    );
    assert!(!plist.contains("899") && !port.contains("# 899"));
}

#[test]
fn port_fetches_a_release_and_builds_what_the_tests_test() {
    let port = read(&format!("{PORT}/Makefile"));
    let manifest = read("Cargo.toml");
    let var = |name: &str| -> String {
        port.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.trim_start().strip_prefix('='))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("port Makefile lacks {name}"))
    };
    // A distfile make fetch can find: GitHub's archive of the release tag.
    let tuple: Vec<String> = var("DIST_TUPLE")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(tuple.len(), 5, "{tuple:?}");
    assert_eq!(tuple[0], "github");
    assert_eq!(tuple[2], "iscsid", "the tarball unpacks to iscsid-${{V}}");
    assert_eq!(tuple[3], "v${V}");
    assert_eq!(tuple[4], ".");
    let version = between(&manifest, "[workspace.package]\nversion = \"", "\"").expect("version");
    assert_eq!(var("V "), version, "the port's V and the workspace version");
    assert!(
        !port
            .lines()
            .any(|l| l.starts_with("SITES") && l.trim_end().ends_with('=')),
        "an empty SITES"
    );
    assert!(
        !port.lines().any(|l| l.starts_with("DISTNAME")),
        "DIST_TUPLE sets DISTNAME"
    );
    let release = read("ports/RELEASE.md");
    for step in [
        "git tag",
        "make makesum",
        "ports/update-crates.sh",
        "crates.inc",
        &tuple[1],
    ] {
        assert!(
            release.contains(step),
            "ports/RELEASE.md does not mention {step}"
        );
    }
    // lang/rust's WANTLIB for Rust programs: c, pthread, c++abi.
    assert_eq!(var("WANTLIB +"), "${MODCARGO_WANTLIB}");
    // devel/cargo writes panic = 'unwind' into its cargo configuration;
    // the environment wins over it, and the programs are tested with
    // the workspace's abort.
    let release_profile = between(&manifest, "[profile.release]", "\n[").unwrap_or_else(|| {
        manifest
            .split("[profile.release]")
            .nth(1)
            .expect("[profile.release] in Cargo.toml")
    });
    assert!(
        release_profile.contains("panic = \"abort\""),
        "{release_profile}"
    );
    assert!(
        port.lines()
            .any(|l| l.starts_with("MAKE_ENV +=")
                && l.ends_with("CARGO_PROFILE_RELEASE_PANIC=abort")),
        "the port does not restore panic = abort"
    );
}

/// The text of the subsection "Differences from the base system".
fn differences(page: &str) -> Option<String> {
    let lines: Vec<&str> = page
        .lines()
        .skip_while(|l| *l != ".Ss Differences from the base system")
        .skip(1)
        .take_while(|l| !l.starts_with(".Sh ") && !l.starts_with(".Ss "))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The lines of section `sh` of an mdoc page.
fn man_section<'a>(page: &'a str, sh: &str) -> Vec<&'a str> {
    page.lines()
        .skip_while(|l| *l != format!(".Sh {sh}"))
        .skip(1)
        .take_while(|l| !l.starts_with(".Sh "))
        .collect()
}

#[test]
fn man_pages_follow_base_and_list_the_differences() {
    for page in ["man/iscsid.8", "man/iscsictl.8"] {
        let text = read(page);
        let synopsis = man_section(&text, "SYNOPSIS");
        let nm: Vec<_> = synopsis.iter().filter(|l| l.starts_with(".Nm")).collect();
        assert!(!nm.is_empty(), "{page}: no .Nm in SYNOPSIS");
        for l in nm {
            assert_eq!(*l, ".Nm", "{page}: SYNOPSIS has {l:?}, base has a bare .Nm");
        }
        let diff = differences(&text)
            .unwrap_or_else(|| panic!("{page}: no Differences from the base system"));
        for what in [
            "0600",
            "0660",
            "imsg_init 3",
            "ctrlmsghdr",
            "SOCK_SEQPACKET",
        ] {
            assert!(
                diff.contains(what),
                "{page}: differences do not mention {what}"
            );
        }
    }
    let ctl = read("man/iscsictl.8");
    let diff = differences(&ctl).unwrap_or_default();
    for what in [
        "show session",
        "show summary",
        "show vscsi stats",
        "discover",
        "reload",
        "command failed",
        ".Fl f",
    ] {
        assert!(
            diff.contains(what),
            "iscsictl.8: differences do not mention {what}"
        );
    }
    assert!(
        ctl.contains(".Qq recvfd"),
        "iscsictl.8 does not say descriptors are refused"
    );
    let refused = "iscsid sent a file descriptor; iscsictl accepts none";
    assert!(read("iscsictl/src/main.rs").contains(refused));
    assert!(
        man_section(&ctl, "DIAGNOSTICS")
            .join("\n")
            .contains(refused),
        "iscsictl.8 DIAGNOSTICS lack the refused descriptor"
    );
    let d = read("man/iscsid.8");
    let diff = differences(&d).unwrap_or_default();
    for what in [
        "Timers",
        ".Fl u",
        "iscsid:DB1",
        "iscsid:db1",
        "initiatorname \"",
    ] {
        assert!(
            diff.contains(what),
            "iscsid.8: differences do not mention {what}"
        );
    }
    let conf = read("man/iscsi.conf.5");
    for what in ["iscsid:DB1", "iscsid:db1", "in lower case"] {
        assert!(
            conf.contains(what),
            "iscsi.conf.5 initiatorname lacks {what}"
        );
    }
}

#[test]
fn minimum_release_matches_the_t2i_ioctl() {
    use iscsid::vscsi::abi;
    let t2i = format!("{:#x}", abi::VSCSI_T2I);
    assert_eq!(t2i, "0x801c4903");
    let caveats = man_section(&read("man/iscsid.8"), "CAVEATS").join("\n");
    assert!(caveats.contains(".Ox 7.1"), "{caveats}");
    assert!(caveats.contains(&t2i), "iscsid.8 CAVEATS lack {t2i}");
    let port = read(&format!("{PORT}/Makefile"));
    assert!(port.contains("OpenBSD 7.1 or later") && port.contains(&t2i));
    assert!(read(&format!("{PORT}/pkg/README")).contains("OpenBSD 7.1 or later"));
}
