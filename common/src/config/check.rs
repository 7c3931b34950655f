//! Whole-configuration work after parsing: global defaults merged into each
//! target, checks that need the merged values, and the file-mode rule for
//! CHAP secrets.

use proto::names;

use super::error::{ConfigError, ErrorKind};
use super::lexer::Keyword;
use super::parser::{Draft, FileInfo, Loc};
use super::{Config, SessionType};

fn error_at(files: &[FileInfo], at: Loc, kind: ErrorKind) -> ConfigError {
    ConfigError {
        file: files
            .get(at.file)
            .map_or_else(String::new, |f| f.name.clone()),
        line: at.line,
        kind,
    }
}

/// An error unless `name`, set at `at`, is an iSCSI name we accept.
fn check_name(
    files: &[FileInfo],
    keyword: &'static str,
    name: Option<&String>,
    at: Option<Loc>,
) -> Option<ConfigError> {
    let (name, at) = (name?, at?);
    let problem = names::check(name).err()?;
    Some(error_at(
        files,
        at,
        ErrorKind::BadIscsiName {
            keyword,
            name: name.clone(),
            problem,
        },
    ))
}

pub(crate) fn finish(d: Draft) -> Result<Config, Vec<ConfigError>> {
    let Draft {
        files,
        mut errors,
        isid,
        initiatorname,
        initiatorname_at,
        globals,
        targets,
        secret_files,
    } = d;
    errors.extend(check_name(
        &files,
        Keyword::InitiatorName.name(),
        initiatorname.as_ref(),
        initiatorname_at,
    ));
    let g = &globals.params;
    if let (Some(first), Some(max), Some(at)) = (
        g.first_burst_length,
        g.max_burst_length,
        globals.first_burst,
    ) {
        if first > max {
            errors.push(error_at(
                &files,
                at,
                ErrorKind::FirstBurstExceedsMaxBurst { first, max },
            ));
        }
    }

    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let own = &t.params;
        let merged = own.params.merged_over(g);
        if let (Some(first), Some(max)) = (merged.first_burst_length, merged.max_burst_length) {
            // Blame the block only when the block took part; a clash
            // between two global lines was reported above.
            if let Some(at) = own.first_burst.or(own.max_burst) {
                if first > max {
                    errors.push(error_at(
                        &files,
                        at,
                        ErrorKind::FirstBurstExceedsMaxBurst { first, max },
                    ));
                }
            }
        }
        if merged.chap_mutual.is_some() && merged.chap.is_none() {
            let at = own.mutual.unwrap_or(t.at);
            errors.push(error_at(&files, at, ErrorKind::MutualChapWithoutName));
        }
        let mut target = t.target;
        errors.extend(check_name(
            &files,
            Keyword::TargetName.name(),
            target.targetname.as_ref(),
            t.targetname_at,
        ));
        errors.extend(check_name(
            &files,
            Keyword::InitiatorName.name(),
            target.initiatorname.as_ref(),
            t.initiatorname_at,
        ));
        if !t.had_error {
            if target.targetaddr.is_none() {
                errors.push(error_at(
                    &files,
                    t.at,
                    ErrorKind::MissingTargetAddr {
                        target: target.name.clone(),
                    },
                ));
            }
            if target.session_type == SessionType::Normal && target.targetname.is_none() {
                errors.push(error_at(
                    &files,
                    t.at,
                    ErrorKind::MissingTargetName {
                        target: target.name.clone(),
                    },
                ));
            }
        }
        if target.initiatorname.is_none() {
            target.initiatorname.clone_from(&initiatorname);
        }
        target.params = merged;
        out.push(target);
    }

    for id in secret_files {
        let Some(f) = files.get(id) else { continue };
        if let Some(mode) = f.mode {
            if mode & 0o077 != 0 {
                errors.push(ConfigError {
                    file: f.name.clone(),
                    line: 0,
                    kind: ErrorKind::SecretsFileMode {
                        path: f.name.clone(),
                        mode,
                    },
                });
            }
        }
    }

    if errors.is_empty() {
        Ok(Config {
            isid,
            initiatorname,
            targets: out,
            defaults: globals.params.clone(),
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{errs, ok, target, TempDir};
    use super::super::{parse_file, DigestPref};

    #[test]
    fn globals_merge_under_block_values_wherever_they_appear() {
        let c = ok(&format!(
            "headerdigest crc32c\nqueuedepth 32\nchap name g secret gsecret\n\
             {}target u {{\n targetaddr 10.0.0.3\n targetname iqn.2001-04.com.example:n\n headerdigest none\n\
             chap name own secret osecret\n}}\nmaxburstlength 65536\n",
            target("")
        ));
        let (t, u) = (&c.targets[0].params, &c.targets[1].params);
        assert_eq!(t.header_digest, Some(DigestPref::Crc32c));
        assert_eq!(u.header_digest, Some(DigestPref::None));
        assert_eq!(t.queue_depth, Some(32));
        assert_eq!(u.queue_depth, Some(32));
        assert_eq!(t.chap.as_ref().unwrap().name, "g");
        assert_eq!(u.chap.as_ref().unwrap().secret, b"osecret");
        // A global line after the blocks still applies to them.
        assert_eq!(t.max_burst_length, Some(65536));
        assert_eq!(u.max_burst_length, Some(65536));
    }

    #[test]
    fn first_burst_must_not_exceed_max_burst() {
        assert_eq!(
            errs(&format!(
                "maxburstlength 8192\nfirstburstlength 16384\n{}",
                target("")
            )),
            ["t.conf:2: firstburstlength 16384 exceeds maxburstlength 8192"]
        );
        // A block value clashing with a global one is blamed on the block.
        assert_eq!(
            errs(&format!(
                "maxburstlength 8192\n{}",
                target(" firstburstlength 16384")
            )),
            ["t.conf:5: firstburstlength 16384 exceeds maxburstlength 8192"]
        );
        assert_eq!(
            errs(&format!(
                "firstburstlength 16384\n{}",
                target(" maxburstlength 8192")
            )),
            ["t.conf:5: firstburstlength 16384 exceeds maxburstlength 8192"]
        );
        // Equal is fine, and so is a block fixing a global clash... except
        // that the global clash itself is still reported once.
        ok(&target(" maxburstlength 8192\n firstburstlength 8192"));
        assert_eq!(
            errs(&format!(
                "maxburstlength 8192\nfirstburstlength 16384\n{}{}",
                target(" firstburstlength 4096"),
                target("").replace("target t", "target u")
            )),
            ["t.conf:2: firstburstlength 16384 exceeds maxburstlength 8192"]
        );
    }

    #[test]
    fn mutual_chap_needs_our_own_name() {
        assert_eq!(
            errs(&target(" chap mutual name tgt secret tsecret")),
            ["t.conf:4: mutual CHAP needs chap name"]
        );
        // Inherited from the global defaults: blamed on the block.
        assert_eq!(
            errs(&format!(
                "chap mutual name tgt secret tsecret\n\n{}",
                target("")
            )),
            ["t.conf:3: mutual CHAP needs chap name"]
        );
        // Global mutual, per-target identity: fine.
        let c = ok(&format!(
            "chap mutual name tgt secret tsecret\n{}",
            target(" chap name me secret msecret")
        ));
        assert_eq!(
            c.targets[0].params.chap_mutual.as_ref().unwrap().name,
            "tgt"
        );
    }

    #[test]
    fn required_fields() {
        assert_eq!(
            errs("target a {\n}\n"),
            [
                "t.conf:1: target a has no targetaddr",
                "t.conf:1: target a has no targetname"
            ]
        );
        assert_eq!(
            errs("\ntarget d {\n discovery\n}\n"),
            ["t.conf:2: target d has no targetaddr"]
        );
        assert_eq!(
            errs("target n {\n disabled\n targetaddr 10.0.0.2\n}\n"),
            ["t.conf:1: target n has no targetname"]
        );
        let c = ok("target d {\n discovery\n targetaddr 10.0.0.2\n}\n");
        assert_eq!(c.targets[0].targetname, None);
    }

    #[test]
    fn iscsi_names_are_checked_where_they_are_set() {
        // Global initiatorname: blamed on its own line, once, however many
        // blocks inherit it.
        assert_eq!(
            errs(&format!("\ninitiatorname iqn.x:y\n{}", target(""))),
            ["t.conf:2: invalid initiatorname \"iqn.x:y\": \
              iqn. must be followed by a date yyyy-mm and '.'"]
        );
        assert_eq!(
            errs(&target(
                " initiatorname \"iqn.2001-04.com.example:a\x1b[2J\""
            )),
            [
                "t.conf:4: invalid initiatorname \"iqn.2001-04.com.example:a\\u{1b}[2J\": \
              character '\\u{1b}' at position 26 is not allowed in an iSCSI name \
              (only a-z, 0-9, '-', '.' and ':')"
            ]
        );
        let bel = errs(
            "target t {\n targetaddr 10.0.0.2\n targetname \"iqn.2001-04.com.example:\x07\"\n}\n",
        );
        assert_eq!(
            bel,
            [
                "t.conf:3: invalid targetname \"iqn.2001-04.com.example:\\u{7}\": \
              character '\\u{7}' at position 25 is not allowed in an iSCSI name \
              (only a-z, 0-9, '-', '.' and ':')"
            ]
        );
        // Nothing raw reaches the terminal.
        assert!(!bel[0].chars().any(char::is_control), "{bel:?}");
        assert_eq!(
            errs("target t {\n targetaddr 10.0.0.2\n targetname naa.52004567BA64678D\n}\n"),
            [
                "t.conf:3: invalid targetname \"naa.52004567BA64678D\": upper-case 'B' \
              at position 13: iSCSI names are lower case, write it in lower case"
            ]
        );
        assert_eq!(
            errs("target t {\n targetaddr 10.0.0.2\n targetname \"\"\n}\n"),
            ["t.conf:3: invalid targetname \"\": empty iSCSI name"]
        );
        // A block's own initiatorname is checked even when the global one
        // is fine, and the global one even when every block has its own.
        assert_eq!(
            errs(&format!(
                "initiatorname iqn.2001-04.com.example:host\n{}",
                target(" initiatorname disk1")
            )),
            ["t.conf:5: invalid initiatorname \"disk1\": \
              iSCSI name must start with iqn., eui. or naa."]
        );
        assert_eq!(
            errs(&format!(
                "initiatorname eui.0\n{}",
                target(" initiatorname iqn.2001-04.com.example:own")
            )),
            ["t.conf:1: invalid initiatorname \"eui.0\": \
              eui. must be followed by 16 hex digits, not 1"]
        );
        let c = ok(&format!(
            "initiatorname eui.02004567a425678d\n{}target d {{\n discovery\n targetaddr 10.0.0.3\n}}\n",
            target("").replace("iqn.2001-04.com.example:t", "naa.6001405abcdef0123456789abcdef012")
        ));
        assert_eq!(
            c.targets[0].targetname.as_deref(),
            Some("naa.6001405abcdef0123456789abcdef012")
        );
        assert_eq!(c.targets[1].targetname, None);
        assert_eq!(
            c.targets[1].initiatorname.as_deref(),
            Some("eui.02004567a425678d")
        );
    }

    fn messages(e: Vec<super::ConfigError>) -> Vec<String> {
        e.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn secrets_need_a_private_file() {
        let d = TempDir::new();
        let body = target(" chap name me secret \"0123456789ab\"");
        let p = d.write("open.conf", &body, 0o644);
        let shown = p.display().to_string();
        assert_eq!(
            messages(parse_file(&p).unwrap_err()),
            [format!(
                "{shown}: holds CHAP secrets but is accessible by group or others \
                 (mode 0644); chmod 600 {shown}"
            )]
        );
        let p = d.write("group.conf", &body, 0o640);
        assert_eq!(parse_file(&p).unwrap_err().len(), 1);
        let p = d.write("private.conf", &body, 0o600);
        assert_eq!(
            parse_file(&p).unwrap().targets[0]
                .params
                .chap
                .as_ref()
                .unwrap()
                .name,
            "me"
        );
        let p = d.write("readonly.conf", &body, 0o400);
        assert!(parse_file(&p).is_ok());
        // Without secrets the mode does not matter.
        let p = d.write("plain.conf", &target(" chap algorithm md5"), 0o644);
        assert!(parse_file(&p).is_ok());
    }

    #[test]
    fn the_file_that_holds_the_secret_text_is_the_one_checked() {
        let d = TempDir::new();
        // Secret in a world-readable include, main file private.
        d.write("inc.conf", "chap name me secret topsecret\n", 0o644);
        let main = d.write(
            "main.conf",
            &format!("include \"inc.conf\"\n{}", target("")),
            0o600,
        );
        let e = parse_file(&main).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].file, d.path().join("inc.conf").display().to_string());
        assert_eq!(e[0].line, 0);

        // A macro defined in a private file and used in a public one: the
        // public file only names it.
        d.write("secret.conf", "pw = topsecret\n", 0o600);
        let main = d.write(
            "uses.conf",
            &format!(
                "include \"secret.conf\"\n{}",
                target(" chap name me secret $pw")
            ),
            0o644,
        );
        assert!(parse_file(&main).is_ok());

        // The other way round: the public file holds the text.
        d.write("pubmacro.conf", "pw = topsecret\n", 0o604);
        let main = d.write(
            "priv.conf",
            &format!(
                "include \"pubmacro.conf\"\n{}",
                target(" chap name me secret $pw")
            ),
            0o600,
        );
        let e = parse_file(&main).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            format!(
                "{0}: holds CHAP secrets but is accessible by group or others \
                 (mode 0604); chmod 600 {0}",
                d.path().join("pubmacro.conf").display()
            )
        );

        // A secret pieced together from a macro and literal text.
        d.write("half.conf", "pw = top\n", 0o600);
        let main = d.write(
            "joined.conf",
            &format!(
                "include \"half.conf\"\n{}",
                target(" chap name me secret $pw.secret")
            ),
            0o644,
        );
        let e = parse_file(&main).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].file, main.display().to_string());
    }

    #[test]
    fn parse_str_has_no_mode_to_check() {
        ok(&target(" chap name me secret topsecret"));
    }
}
