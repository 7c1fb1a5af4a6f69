use super::*;

fn env() -> Env {
    Env::from_key_values([
        "PWD=/home",
        "SHELL=bash",
        "NULL=",
        "PATHV=a/b/c",
        "FILE=archive.tar.gz",
        "SP=a b",
    ])
}

#[test]
fn expand_table() {
    // (input, expected or None for an error), mostly from BuildKit's envVarTest table.
    let cases: &[(&str, Option<&str>)] = &[
        ("hello", Some("hello")),
        ("he'll'o", Some("hello")),
        ("he'llo", None),
        ("he\\'llo", Some("he'llo")),
        ("he\\\\'llo", None),
        ("abc\\tdef", Some("abctdef")),
        ("\"abc\\tdef\"", Some("abc\\tdef")),
        ("\"abc\\\\tdef\"", Some("abc\\tdef")),
        ("'abc\\tdef'", Some("abc\\tdef")),
        ("hello\\", Some("hello")),
        ("hello\\\\", Some("hello\\")),
        ("\"hello", None),
        ("\"hello\\\"", None),
        ("\"hel'lo\"", Some("hel'lo")),
        ("'hello", None),
        ("'hello\\'", Some("hello\\")),
        ("'hello\\there'", Some("hello\\there")),
        ("\"''\"", Some("''")),
        ("$.", Some("$.")),
        ("he$1x", Some("hex")),
        ("he$.x", Some("he$.x")),
        ("he$pwd.", Some("he.")),
        ("he$PWD", Some("he/home")),
        ("he\\$PWD", Some("he$PWD")),
        ("he\\\\$PWD", Some("he\\/home")),
        ("\"he\\$PWD\"", Some("he$PWD")),
        ("\"he\\\\$PWD\"", Some("he\\/home")),
        ("\\${}", Some("${}")),
        ("he\\${}xx", Some("he${}xx")),
        ("${}", None),
        ("he${}xx", None),
        ("he${hi}xx", Some("hexx")),
        ("he${PWD}", Some("he/home")),
        ("he${.}", None),
        ("he${:x}", None),
        ("he${XXX:-000}xx", Some("he000xx")),
        ("he${PWD:-000}xx", Some("he/homexx")),
        ("he${XXX:-$PWD}xx", Some("he/homexx")),
        ("he${XXX:-${PWD:-yyy}}xx", Some("he/homexx")),
        ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
        ("he${XXX:YYY}", None),
        ("he${XXX?}", None),
        ("he${XXX:?}", None),
        ("he${PWD?}", Some("he/home")),
        ("he${PWD:?}", Some("he/home")),
        ("he${NULL?}", Some("he")),
        ("he${NULL:?}", None),
        ("he${XXX:+${PWD}}xx", Some("hexx")),
        ("he${PWD:+${XXX}}xx", Some("hexx")),
        ("he${PWD:+${SHELL}}xx", Some("hebashxx")),
        ("he${XXX:+000}xx", Some("hexx")),
        ("he${PWD:+000}xx", Some("he000xx")),
        ("he${XXX-000}xx", Some("he000xx")),
        ("he${NULL-000}xx", Some("hexx")),
        ("he${NULL:-000}xx", Some("he000xx")),
        ("he${NULL+000}xx", Some("he000xx")),
        ("he${NULL:+000}xx", Some("hexx")),
        ("he${XXX+000}xx", Some("hexx")),
        ("'he${XX}'", Some("he${XX}")),
        ("\"he${PWD}\"", Some("he/home")),
        ("\"he'$PWD'\"", Some("he'/home'")),
        ("'$PWD'", Some("$PWD")),
        ("'\\$PWD'", Some("\\$PWD")),
        ("'\"hello\"'", Some("\"hello\"")),
        ("he${PWD", None),
        ("he${PWD=000}xx", None),
        ("he${PWD,}xx", None),
        ("${", None),
        // Pattern forms.
        ("${PATHV#*/}", Some("b/c")),
        ("${PATHV##*/}", Some("c")),
        ("${PATHV%/*}", Some("a/b")),
        ("${PATHV%%/*}", Some("a")),
        ("${FILE%.*}", Some("archive.tar")),
        ("${FILE%%.*}", Some("archive")),
        ("${FILE#*.}", Some("tar.gz")),
        ("${FILE##*.}", Some("gz")),
        ("${FILE#nomatch}", Some("archive.tar.gz")),
        ("${FILE%a?.gz}", Some("archive.t")),
        ("${FILE#\\*}", Some("archive.tar.gz")),
        ("${FILE#\\x}", None),
        ("${PATHV/b/x}", Some("a/x/c")),
        ("${PATHV//\\//-}", Some("a-b-c")),
        ("${PATHV/\\//-}", Some("a-b/c")),
        ("${PATHV/*/z}", Some("z")),
        ("${PATHV/q/z}", Some("a/b/c")),
        ("${UNSET/a/b}", Some("")),
        ("${PATHV/a", None),
        ("${PATHV/a/b", None),
        // Special parameters take one character.
        ("$@x", Some("x")),
        ("${#}", Some("")),
        ("$$", Some("")),
    ];
    let env = env();
    for (input, want) in cases {
        let got = expand(input, &env);
        match want {
            Some(w) => assert_eq!(got.as_deref(), Ok(*w), "input {input:?}"),
            None => assert!(got.is_err(), "input {input:?} should fail, got {got:?}"),
        }
    }
}

#[test]
fn error_messages() {
    let env = env();
    let cases: &[(&str, &str)] = &[
        ("${XXX:?}", "failed to process \"${XXX:?}\": XXX: is not allowed to be unset"),
        ("${NULL:?}", "failed to process \"${NULL:?}\": NULL: is not allowed to be empty"),
        ("${XXX?custom msg}", "failed to process \"${XXX?custom msg}\": XXX: custom msg"),
        ("${}", "failed to process \"${}\": syntax error: bad substitution"),
        ("${PWD", "failed to process \"${PWD\": syntax error: missing '}'"),
        ("${PWD:-x", "failed to process \"${PWD:-x\": syntax error: missing '}'"),
        ("${PWD,}", "failed to process \"${PWD,}\": unsupported modifier (,) in substitution"),
        ("${PWD:x}", "failed to process \"${PWD:x}\": unsupported modifier (:x) in substitution"),
        ("'abc", "failed to process \"'abc\": unexpected end of statement while looking for matching single-quote"),
        ("\"abc", "failed to process \"\\\"abc\": unexpected end of statement while looking for matching double-quote"),
        ("${PATHV/a", "failed to process \"${PATHV/a\": syntax error: missing '/' in ${}"),
    ];
    for (input, want) in cases {
        assert_eq!(
            expand(input, &env).unwrap_err().to_string(),
            *want,
            "input {input:?}"
        );
    }
}

#[test]
fn words_table() {
    let env = env();
    let cases: &[(&str, &[&str])] = &[
        ("hello", &["hello"]),
        ("hello   world", &["hello", "world"]),
        ("  hello  ", &["hello"]),
        ("\"hello world\"", &["hello world"]),
        ("'hello world'", &["hello world"]),
        ("hello\\ world", &["hello world"]),
        ("$SP", &["a", "b"]),
        ("\"$SP\"", &["a b"]),
        ("x$SP", &["xa", "b"]),
        ("a \"\" b", &["a", "b"]),
        ("a\"b c\"d e", &["ab cd", "e"]),
        ("${XXX:-one two}", &["one", "two"]),
        ("src1 src2 /dest/", &["src1", "src2", "/dest/"]),
        ("", &[]),
    ];
    for (input, want) in cases {
        let got = expand_words(input, &env).unwrap();
        assert_eq!(
            got,
            want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "input {input:?}"
        );
    }
}

#[test]
fn backtick_escape() {
    let env = env();
    let lex = Lexer::new('`');
    assert_eq!(
        lex.process_word("C:\\path\\$PWD", &env).unwrap(),
        "C:\\path\\/home"
    );
    assert_eq!(lex.process_word("a`$PWD", &env).unwrap(), "a$PWD");
    assert_eq!(lex.process_word("\"q`\"q\"", &env).unwrap(), "q\"q");
    assert_eq!(lex.process_words("a` b c", &env).unwrap(), vec!["a b", "c"]);
}

#[test]
fn skip_unset_and_raw_modes() {
    let env = env();
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    assert_eq!(
        lex.process_word("$XX ${YY} ${ZZ:-d} ${WW/a/b} $PWD", &env)
            .unwrap(),
        "$XX ${YY} ${ZZ:-d} ${WW/a/b} /home"
    );
    let mut raw = Lexer::new('\\');
    raw.raw_quotes = true;
    assert_eq!(raw.process_word("'a' \"b\"", &env).unwrap(), "'a' \"b\"");
    let mut esc = Lexer::new('\\');
    esc.raw_escapes = true;
    assert_eq!(esc.process_word("a\\b", &env).unwrap(), "a\\b");
}

#[test]
fn matched_and_unmatched_names() {
    let e = Lexer::default()
        .process("$PWD ${NOPE:-x} $SHELL", &env())
        .unwrap();
    assert_eq!(e.matched.into_iter().collect::<Vec<_>>(), vec!["PWD", "SHELL"]);
    assert_eq!(e.unmatched.into_iter().collect::<Vec<_>>(), vec!["NOPE"]);
}

#[test]
fn env_set_replaces_in_place() {
    let mut e = Env::new();
    e.set("A", "1");
    e.set("B", "2");
    e.set("A", "3");
    assert_eq!(e.to_key_values(), vec!["A=3", "B=2"]);
    e.remove("A");
    assert_eq!(e.get("A"), None);
    assert_eq!(
        Env::from_key_values(["X", "Y=1=2"]).to_key_values(),
        vec!["X=", "Y=1=2"]
    );
}

#[test]
fn which_instructions_expand() {
    for yes in [
        "ADD",
        "copy",
        "ENV",
        "EXPOSE",
        "FROM",
        "LABEL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
        "ARG",
    ] {
        assert!(expands_variables(yes), "{yes}");
    }
    for no in [
        "RUN",
        "CMD",
        "ENTRYPOINT",
        "ONBUILD",
        "SHELL",
        "HEALTHCHECK",
        "MAINTAINER",
    ] {
        assert!(!expands_variables(no), "{no}");
    }
}

/// BuildKit's `TestProcessWithMatches`: (input, env, expected or None for error, matched, unmatched).
#[test]
fn buildkit_process_with_matches() {
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        Option<&'static str>,
        &'static [&'static str],
        &'static [&'static str],
    );
    const FB: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];
    let cases: &[Case] = &[
        ("x", &[("DUMMY", "dummy")], Some("x"), &[], &[]),
        ("x ${UNUSED}", &[("DUMMY", "dummy")], Some("x "), &[], &["UNUSED"]),
        ("x ${FOO}", &[("FOO", "y")], Some("x y"), &["FOO"], &[]),
        (
            "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
            FB,
            Some("xxx  ccc"),
            &["BAR", "FOO"],
            &["BAZ"],
        ),
        (
            "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
            FB,
            Some("xxx bbb ccc"),
            &["BAR", "FOO"],
            &["BAZ"],
        ),
        ("${FOO:-}", FB, Some("xxx"), &["FOO"], &[]),
        ("${FOO:-}", &[], Some(""), &[], &["FOO"]),
        (
            "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
            FB,
            Some("aaa bbb "),
            &["BAR", "FOO"],
            &["BAZ"],
        ),
        (
            "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
            FB,
            Some("aaa  "),
            &["BAR", "FOO"],
            &["BAZ"],
        ),
        ("${FOO?aaa}", FB, Some("xxx"), &["FOO"], &[]),
        ("${BAR?bbb}", FB, Some(""), &["BAR"], &[]),
        ("${BAZ?ccc}", FB, None, &[], &[]),
        ("${FOO:?aaa}", FB, Some("xxx"), &["FOO"], &[]),
        ("${BAR:?bbb}", FB, None, &[], &[]),
        ("${BAZ:?ccc}", FB, None, &[], &[]),
        ("${BAZ:?}", FB, None, &[], &[]),
        ("${FOO=aaa}", FB, None, &[], &[]),
        ("${FOO=:aaa}", FB, None, &[], &[]),
        ("${FOO=}", &[], None, &[], &[]),
        (
            "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
            &[("FOO", "()[]{}^$.*?|\\x")],
            Some("x"),
            &["FOO"],
            &[],
        ),
        ("${FOO%%\\**}", &[("FOO", "xx**")], Some("xx"), &["FOO"], &[]),
        ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y"), &["FOO"], &[]),
        ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        (
            "${FOO#$BAR}",
            &[("FOO", "xxyy"), ("BAR", "x")],
            Some("xyy"),
            &["BAR", "FOO"],
            &[],
        ),
        (
            "${FOO#$BAR}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("xxyy"),
            &["BAR", "FOO"],
            &[],
        ),
        ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy"), &["FOO"], &[]),
        ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y"), &["FOO"], &[]),
        (
            "${ABC:-.}${FOO%x}${ABC:-.}",
            &[("FOO", "xxyy")],
            Some(".xxyy."),
            &["FOO"],
            &["ABC"],
        ),
        ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], Some("a"), &["FOO"], &[]),
        ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        (
            "${FOO%%$BAR}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("xxyy"),
            &["BAR", "FOO"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
            Some("/foo.*/*.txt - /foo..*.txt"),
            &["FOO", "NEEDLE"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            Some("/tmp/bar.txt - /bar.txt"),
            &["FOO", "NEEDLE"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("REPLACEMENT", "/")],
            Some("/foo/b/c.txt - /foo/c.txt"),
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT}",
            &[
                ("FOO", "http://google.de"),
                ("NEEDLE", "http://"),
                ("REPLACEMENT", "https://"),
            ],
            Some("https://google.de"),
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        (
            "${FOO//\\//\\/}",
            &[("FOO", "/tmp/foo.txt")],
            Some("\\/tmp\\/foo.txt"),
            &["FOO"],
            &[],
        ),
        (
            "${FOO/$BAR/ww}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("wwxxyy"),
            &["BAR", "FOO"],
            &[],
        ),
        ("${FOO//ww}", &[("FOO", "xxyy")], None, &[], &[]),
        ("${FOO//}", &[("FOO", "xxyy")], None, &[], &[]),
        ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO///}", &[], Some(""), &[], &["FOO"]),
        (
            "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
            &[
                ("VERSION", "v1.2.3"),
                ("TARGETOS", "linux"),
                ("TARGETARCH", "arm"),
                ("TARGETVARIANT", "v7"),
            ],
            Some("something-v1.2.3.linux-arm-v7.tar.gz"),
            &["TARGETARCH", "TARGETOS", "TARGETVARIANT", "VERSION"],
            &[],
        ),
    ];
    for (input, vars, want, matched, unmatched) in cases {
        let env: Env = vars.iter().copied().collect();
        let got = Lexer::default().process(input, &env);
        match want {
            None => assert!(got.is_err(), "{input:?} should fail: {got:?}"),
            Some(w) => {
                let got = got.unwrap_or_else(|e| panic!("{input:?}: {e}"));
                assert_eq!(got.result, *w, "{input:?}");
                assert_eq!(
                    got.matched.iter().collect::<Vec<_>>(),
                    *matched,
                    "matched in {input:?}"
                );
                assert_eq!(
                    got.unmatched.iter().collect::<Vec<_>>(),
                    *unmatched,
                    "unmatched in {input:?}"
                );
            }
        }
    }
}

/// BuildKit's `TestShellParserMandatoryEnvVars`.
#[test]
fn buildkit_mandatory_env_vars() {
    let set = Env::from_key_values(["VAR=plain", "ARG=x"]);
    let empty = Env::from_key_values(["VAR=", "ARG=x"]);
    let unset = Env::from_key_values(["ARG=x"]);
    let no_empty = "${VAR:?message here$ARG}";
    let no_unset = "${VAR?message here$ARG}";
    assert_eq!(expand(no_empty, &set).unwrap(), "plain");
    assert!(expand(no_empty, &empty)
        .unwrap_err()
        .to_string()
        .contains("message herex"));
    assert!(expand(no_empty, &unset)
        .unwrap_err()
        .to_string()
        .contains("message herex"));
    assert_eq!(expand(no_unset, &set).unwrap(), "plain");
    assert_eq!(expand(no_unset, &empty).unwrap(), "");
    assert!(expand(no_unset, &unset)
        .unwrap_err()
        .to_string()
        .contains("message herex"));
}

#[test]
fn buildkit_reverse_pattern() {
    for (pattern, want) in [
        ("a\\*c", "c\\*a"),
        ("\\\\\\ab", "b\\a\\\\"),
        ("ab\\", "\\ba"),
        ("👽\\🚀🖖", "🖖\\🚀👽"),
        ("\\\\b", "b\\\\"),
    ] {
        assert_eq!(reverse_pattern(pattern), want, "{pattern}");
    }
    for invalid in ["\\", "\\x", "\\\\\\"] {
        assert!(shell_pattern_regex(invalid, true, true).is_err(), "{invalid}");
    }
}
