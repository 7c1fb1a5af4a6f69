use std::time::Duration;

use super::*;

fn s(v: &str) -> String {
    v.to_string()
}

fn sv(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Parses `FROM base` followed by `body` and returns the stage's instructions.
fn body(body: &str) -> Vec<Instruction> {
    let df = parse(&format!("FROM base\n{body}")).unwrap_or_else(|e| panic!("{body:?}: {e}"));
    df.stages.into_iter().next().unwrap().instructions
}

fn one(src: &str) -> InstructionKind {
    let mut instructions = body(src);
    assert_eq!(instructions.len(), 1, "{src:?}");
    instructions.remove(0).kind
}

fn err(text: &str) -> String {
    parse(text).map(|_| ()).unwrap_err().to_string()
}

fn kv(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue {
            key: s(k),
            value: s(v),
        })
        .collect()
}

fn copy(sources: &[&str], dest: &str) -> Copy {
    Copy {
        sources: sources.iter().map(|p| Source::Path(s(p))).collect(),
        dest: s(dest),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        excludes: vec![],
        json: false,
    }
}

fn run(cmd: CommandLine) -> Run {
    Run {
        command: cmd,
        mounts: vec![],
        network: None,
        security: None,
        heredocs: vec![],
    }
}

#[test]
fn instruction_forms() {
    use CommandLine::{Exec, Shell};
    use InstructionKind as K;
    let cases: Vec<(&str, InstructionKind)> = vec![
        ("RUN echo hi", K::Run(run(Shell(s("echo hi"))))),
        ("run   echo  hi  ", K::Run(run(Shell(s("echo  hi"))))),
        ("RUN [\"echo\", \"hi\"]", K::Run(run(Exec(sv(&["echo", "hi"]))))),
        (
            "RUN [\"echo\", \"hi\"] extra",
            K::Run(run(Shell(s("[\"echo\", \"hi\"] extra")))),
        ),
        ("RUN [echo]", K::Run(run(Shell(s("[echo]"))))),
        ("RUN", K::Run(run(Shell(s(""))))),
        ("CMD [\"a\",\"b c\"]", K::Cmd(Exec(sv(&["a", "b c"])))),
        ("CMD echo $HOME", K::Cmd(Shell(s("echo $HOME")))),
        ("CMD []", K::Cmd(Exec(vec![]))),
        (
            "CMD ['single', 'quotes']",
            K::Cmd(Shell(s("['single', 'quotes']"))),
        ),
        (
            "ENTRYPOINT [\"/bin/app\"]",
            K::Entrypoint(Exec(sv(&["/bin/app"]))),
        ),
        (
            "entrypoint exec /bin/app",
            K::Entrypoint(Shell(s("exec /bin/app"))),
        ),
        ("ENV a=b c=\"d e\"", K::Env(kv(&[("a", "b"), ("c", "\"d e\"")]))),
        ("ENV a b c", K::Env(kv(&[("a", "b c")]))),
        ("ENV a  \"b c\"", K::Env(kv(&[("a", "\"b c\"")]))),
        ("ENV a=", K::Env(kv(&[("a", "")]))),
        ("ENV x=a\\ b", K::Env(kv(&[("x", "a\\ b")]))),
        (
            "ARG A",
            K::Arg(vec![ArgDecl {
                name: s("A"),
                default: None,
            }]),
        ),
        (
            "ARG A=1 B C=\"x y\"",
            K::Arg(vec![
                ArgDecl {
                    name: s("A"),
                    default: Some(s("1")),
                },
                ArgDecl {
                    name: s("B"),
                    default: None,
                },
                ArgDecl {
                    name: s("C"),
                    default: Some(s("\"x y\"")),
                },
            ]),
        ),
        (
            "ARG A=",
            K::Arg(vec![ArgDecl {
                name: s("A"),
                default: Some(s("")),
            }]),
        ),
        (
            "LABEL a=b \"c d\"=\"e f\"",
            K::Label(kv(&[("a", "b"), ("\"c d\"", "\"e f\"")])),
        ),
        ("LABEL version 1.0", K::Label(kv(&[("version", "1.0")]))),
        (
            "EXPOSE 80 443/tcp  53/udp",
            K::Expose(sv(&["80", "443/tcp", "53/udp"])),
        ),
        ("USER app:app", K::User(s("app:app"))),
        ("USER $U", K::User(s("$U"))),
        ("WORKDIR /app dir", K::Workdir(s("/app dir"))),
        ("VOLUME /data /logs", K::Volume(sv(&["/data", "/logs"]))),
        (
            "VOLUME [\"/data\", \"/my logs\"]",
            K::Volume(sv(&["/data", "/my logs"])),
        ),
        (
            "SHELL [\"/bin/bash\", \"-c\"]",
            K::Shell(sv(&["/bin/bash", "-c"])),
        ),
        ("STOPSIGNAL SIGTERM", K::StopSignal(s("SIGTERM"))),
        (
            "MAINTAINER Jane Doe <jane@example.com>",
            K::Maintainer(s("Jane Doe <jane@example.com>")),
        ),
        ("HEALTHCHECK NONE", K::Healthcheck(Healthcheck::None)),
        ("COPY a b /dest/", K::Copy(copy(&["a", "b"], "/dest/"))),
        (
            "COPY [\"a b\", \"/dest\"]",
            K::Copy(Copy {
                json: true,
                ..copy(&["a b"], "/dest")
            }),
        ),
        (
            "COPY --from=build --chown=1:2 --chmod=755 --link --parents --exclude=*.md --exclude=x a /d",
            K::Copy(Copy {
                from: Some(s("build")),
                chown: Some(s("1:2")),
                chmod: Some(s("755")),
                link: true,
                parents: true,
                excludes: sv(&["*.md", "x"]),
                ..copy(&["a"], "/d")
            }),
        ),
        ("COPY --link=false a /d", K::Copy(copy(&["a"], "/d"))),
        (
            "copy --from=\"0\" a /d",
            K::Copy(Copy {
                from: Some(s("0")),
                ..copy(&["a"], "/d")
            }),
        ),
        (
            "ADD --chown=app --chmod=644 --checksum=sha256:abc --keep-git-dir --link https://x/y.tar /d",
            K::Add(Add {
                sources: vec![Source::Path(s("https://x/y.tar"))],
                dest: s("/d"),
                chown: Some(s("app")),
                chmod: Some(s("644")),
                checksum: Some(s("sha256:abc")),
                keep_git_dir: true,
                link: true,
                excludes: vec![],
                json: false,
            }),
        ),
    ];
    for (src, want) in cases {
        assert_eq!(one(src), want, "{src:?}");
    }
}

#[test]
fn run_flags_are_kept() {
    let InstructionKind::Run(r) = one(
        "RUN --mount=type=cache,target=/root/.cache,id=x --mount=type=bind,from=build,source=/out,target=/in \
         --network=none --security=insecure make",
    ) else {
        panic!()
    };
    assert_eq!(r.command, CommandLine::Shell(s("make")));
    assert_eq!(r.network.as_deref(), Some("none"));
    assert_eq!(r.security.as_deref(), Some("insecure"));
    assert_eq!(r.mounts.len(), 2);
    assert_eq!(r.mounts[0].mount_type(), "cache");
    assert_eq!(r.mounts[0].get("target"), Some("/root/.cache"));
    assert_eq!(r.mounts[0].from(), None);
    assert_eq!(r.mounts[1].from(), Some("build"));
    assert_eq!(r.mounts[1].get("source"), Some("/out"));
    let m = MountSpec::parse("type=secret,id=tok,\"target=/a,b\",required");
    assert_eq!(m.get("target"), Some("/a,b"));
    assert_eq!(m.fields.last(), Some(&(s("required"), None)));
    assert_eq!(MountSpec::parse("target=/x").mount_type(), "bind");
}

#[test]
fn healthcheck_forms() {
    let InstructionKind::Healthcheck(Healthcheck::Check(h)) = one(
        "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=5s --start-interval=500ms --retries=3 \
         CMD curl -f http://localhost/",
    ) else {
        panic!()
    };
    assert_eq!(h.test, CommandLine::Shell(s("curl -f http://localhost/")));
    assert_eq!(h.test_array(), sv(&["CMD-SHELL", "curl -f http://localhost/"]));
    assert_eq!(h.interval, Some(Duration::from_secs(30)));
    assert_eq!(h.timeout, Some(Duration::from_secs(90)));
    assert_eq!(h.start_period, Some(Duration::from_secs(5)));
    assert_eq!(h.start_interval, Some(Duration::from_millis(500)));
    assert_eq!(h.retries, Some(3));

    let InstructionKind::Healthcheck(Healthcheck::Check(h)) = one("healthcheck cmd [\"/bin/check\", \"-q\"]")
    else {
        panic!()
    };
    assert_eq!(h.test_array(), sv(&["CMD", "/bin/check", "-q"]));
    assert_eq!((h.interval, h.retries), (None, None));
    assert_eq!(
        one("HEALTHCHECK none"),
        InstructionKind::Healthcheck(Healthcheck::None)
    );
}

#[test]
fn from_forms() {
    let df = parse(
        "ARG V=1\nFROM --platform=$BUILDPLATFORM golang:${V} AS Build\nRUN x\nfrom build as Final.Stage-2\nFROM scratch\n",
    )
    .unwrap();
    assert_eq!(df.global_args.len(), 1);
    assert_eq!(
        df.global_arg_decls().next().unwrap().default.as_deref(),
        Some("1")
    );
    let st = &df.stages;
    assert_eq!(st.len(), 3);
    assert_eq!(st[0].name.as_deref(), Some("build"));
    assert_eq!(st[0].base, "golang:${V}");
    assert_eq!(st[0].platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(st[0].line, 2);
    assert_eq!(
        st[0].original,
        "FROM --platform=$BUILDPLATFORM golang:${V} AS Build"
    );
    assert_eq!(st[0].instructions.len(), 1);
    assert_eq!(st[1].name.as_deref(), Some("final.stage-2"));
    assert_eq!(st[1].base, "build");
    assert_eq!(st[2].name, None);
    assert_eq!(st[2].platform, None);
    assert_eq!(df.stage_index("BUILD"), Some(0));
    assert_eq!(df.stage_index("2"), Some(2));
    assert_eq!(df.stage_index("3"), None);
    assert_eq!(df.stage_index("nope"), None);
}

#[test]
fn lines_and_original_text() {
    let df = parse("# comment\n\nFROM a\n  RUN one \\\n    two\n\nCMD [\"x\"]   \n").unwrap();
    let st = &df.stages[0];
    assert_eq!(st.line, 3);
    let run = &st.instructions[0];
    assert_eq!((run.line, run.end_line), (4, 5));
    assert_eq!(run.original, "RUN one     two");
    assert_eq!(run.keyword(), "RUN");
    assert_eq!(run.kind, InstructionKind::Run(run_of("one     two")));
    let cmd = &st.instructions[1];
    assert_eq!((cmd.line, cmd.end_line), (7, 7));
    assert_eq!(cmd.original, "CMD [\"x\"]");
}

fn run_of(cmd: &str) -> Run {
    run(CommandLine::Shell(s(cmd)))
}

#[test]
fn continuations() {
    let cases: &[(&str, &str)] = &[
        // Comment lines inside a continuation are dropped.
        ("RUN a \\\n# comment\n  b", "a   b"),
        ("RUN a \\\n    # indented comment\n  b", "a   b"),
        // Empty and whitespace-only lines inside a continuation are skipped (with a warning).
        ("RUN a \\\n\n   \n b", "a  b"),
        // Spaces and tabs after the escape still continue the line.
        ("RUN a \\  \t\nb", "a b"),
        // An escaped escape at the end does not continue.
        ("RUN a \\\\\nRUN b", "a \\\\"),
        // A lone escape on a line continues.
        ("RUN a \\\n\\\nb", "a b"),
        // A comment marker inside an instruction is kept.
        ("RUN echo # not a comment", "echo # not a comment"),
        // A continuation at end of file just ends.
        ("RUN a \\", "a"),
    ];
    for (src, want) in cases {
        let first = body(src).remove(0);
        assert_eq!(first.kind, InstructionKind::Run(run_of(want)), "{src:?}");
    }
    let df = parse("FROM a\nRUN a \\\n\nb\n").unwrap();
    assert_eq!(df.warnings.len(), 2);
    assert!(df.warnings[0].starts_with("[WARNING]: Empty continuation line found in:\n    RUN a b"));
    assert!(parse("FROM a\nRUN a \\\n# c\nb\n").unwrap().warnings.is_empty());
}

#[test]
fn crlf_and_bom() {
    let df = parse("\u{feff}# escape=`\r\nFROM a\r\nRUN x `\r\n  y\r\nENV A=b\r\n").unwrap();
    assert_eq!(df.escape(), '`');
    let ins = &df.stages[0].instructions;
    assert_eq!(ins[0].kind, InstructionKind::Run(run_of("x   y")));
    assert_eq!(ins[1].kind, InstructionKind::Env(kv(&[("A", "b")])));
    assert_eq!(ins[1].line, 5);
    assert!(parse_bytes(b"FROM a\nRUN \xff\xfe\n").is_ok());
}

#[test]
fn escape_directive_windows_file() {
    let text = "# escape=`\n\nFROM mcr.microsoft.com/windows/servercore\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n    && echo done\nWORKDIR c:\\app\nENV p=C:\\a`\\b\n";
    let df = parse(text).unwrap();
    assert_eq!(df.directives.escape, '`');
    let ins = &df.stages[0].instructions;
    assert_eq!(
        ins[0].kind,
        InstructionKind::Copy(copy(&["testfile.txt"], "c:\\"))
    );
    assert_eq!(
        ins[1].kind,
        InstructionKind::Run(run_of("dir c:\\     && echo done"))
    );
    assert_eq!((ins[1].line, ins[1].end_line), (5, 6));
    assert_eq!(ins[2].kind, InstructionKind::Workdir(s("c:\\app")));
    // The word splitter keeps the escape; expansion with the backtick lexer removes it.
    assert_eq!(ins[3].kind, InstructionKind::Env(kv(&[("p", "C:\\a`\\b")])));
    let value = crate::shell::Lexer::new(df.escape())
        .process_word("C:\\a`\\b", &crate::shell::Env::new())
        .unwrap();
    assert_eq!(value, "C:\\a\\b");

    // With the default escape, the same trailing backslash would continue the line.
    let df = parse("FROM a\nCOPY testfile.txt c:\\\nRUN dir\n").unwrap();
    assert_eq!(df.stages[0].instructions.len(), 1);
    // `COPY testfile.txt c:RUN dir`: three words, the last is the destination.
    assert_eq!(
        df.stages[0].instructions[0].kind,
        InstructionKind::Copy(copy(&["testfile.txt", "c:RUN"], "dir"))
    );
}

#[test]
fn parser_directives() {
    let df = parse("# syntax=docker/dockerfile:1.7\n# check=skip=all\n#escape=\\\nFROM a\n").unwrap();
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    assert_eq!(df.directives.check.as_deref(), Some("skip=all"));
    assert_eq!(df.escape(), '\\');
    // After another comment, a blank line or an instruction, directives are plain comments.
    for text in [
        "# hello\n# escape=`\nFROM a\n",
        "\n# escape=`\nFROM a\n",
        "FROM a\n# escape=`\n",
    ] {
        assert_eq!(parse(text).unwrap().escape(), '\\', "{text:?}");
    }
    // An unknown directive ends the directive block.
    assert_eq!(parse("# foo=bar\n# escape=`\nFROM a\n").unwrap().escape(), '\\');
    assert_eq!(parse("  #  ESCAPE  =  `  \nFROM a\n").unwrap().escape(), '`');
}

#[test]
fn heredocs() {
    let InstructionKind::Run(r) = one("RUN <<EOF\necho hello\necho $HOME\nEOF") else {
        panic!()
    };
    assert_eq!(r.command, CommandLine::Shell(s("<<EOF")));
    assert_eq!(
        r.heredocs,
        vec![Heredoc {
            name: s("EOF"),
            fd: 0,
            expand: true,
            chomp: false,
            content: s("echo hello\necho $HOME\n")
        }]
    );

    // <<- strips leading tabs from the body and from the terminator line.
    let InstructionKind::Run(r) = one("RUN <<-EOT bash\n\t\techo a\n\t  b\n\tEOT\n") else {
        panic!()
    };
    assert_eq!(r.heredocs[0].content, "echo a\n  b\n");
    assert!(r.heredocs[0].chomp);

    // Quoted delimiters disable expansion.
    for marker in ["<<\"EOF\"", "<<'EOF'", "<<E\"O\"F"] {
        let InstructionKind::Run(r) = one(&format!("RUN cat {marker}\n$X\nEOF\n")) else {
            panic!()
        };
        assert_eq!(r.heredocs[0].name, "EOF", "{marker}");
        assert!(!r.heredocs[0].expand, "{marker}");
        assert_eq!(r.heredocs[0].content, "$X\n");
    }

    // Several heredocs on one line, read in order; fd numbers kept.
    let ins = body("RUN cat <<A 2<<B > out\na1\nA\nb1\nb2\nB\nRUN next\n");
    let InstructionKind::Run(r) = &ins[0].kind else {
        panic!()
    };
    assert_eq!(
        r.heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.fd))
            .collect::<Vec<_>>(),
        vec![("A", 0), ("B", 2)]
    );
    assert_eq!(r.heredocs[1].content, "b1\nb2\n");
    assert_eq!((ins[0].line, ins[0].end_line), (2, 7));
    assert_eq!(ins[1].line, 8);

    // COPY/ADD heredocs create files.
    let InstructionKind::Copy(c) = one("COPY <<EOF /etc/conf\nkey=$V\nEOF") else {
        panic!()
    };
    assert_eq!(c.dest, "/etc/conf");
    let Source::Heredoc(h) = &c.sources[0] else {
        panic!()
    };
    assert_eq!(
        (h.name.as_str(), h.content.as_str(), h.expand),
        ("EOF", "key=$V\n", true)
    );
    let InstructionKind::Copy(c) = one("COPY <<one.txt <<two.txt plain /dst/\n1\none.txt\n2\ntwo.txt\n")
    else {
        panic!()
    };
    let contents: Vec<String> = c
        .sources
        .iter()
        .map(|src| match src {
            Source::Heredoc(h) => format!("{}={}", h.name, h.content),
            Source::Path(p) => p.clone(),
        })
        .collect();
    assert_eq!(contents, sv(&["one.txt=1\n", "two.txt=2\n", "plain"]));
    let InstructionKind::Add(a) = one("ADD <<-EOF /x\n\tbody\n\tEOF\n") else {
        panic!()
    };
    assert_eq!(
        a.sources,
        vec![Source::Heredoc(Heredoc {
            name: s("EOF"),
            fd: 0,
            expand: true,
            chomp: true,
            content: s("body\n")
        })]
    );

    // JSON form and other instructions don't take heredocs; quoted markers are not heredocs.
    let ins = body("RUN [\"cat\", \"<<EOF\"]\nCMD cat <<EOF\nRUN echo \"<<EOF\"\n");
    assert_eq!(ins.len(), 3);
    let InstructionKind::Run(r) = &ins[2].kind else {
        panic!()
    };
    assert!(r.heredocs.is_empty());

    // Heredoc at end of file without a final newline, and an empty body.
    let InstructionKind::Run(r) = one("RUN <<EOF\nlast line\nEOF") else {
        panic!()
    };
    assert_eq!(r.heredocs[0].content, "last line\n");
    let InstructionKind::Run(r) = one("RUN <<EOF\nEOF\n") else {
        panic!()
    };
    assert_eq!(r.heredocs[0].content, "");

    // ONBUILD keeps heredocs in its expression.
    let InstructionKind::Onbuild(o) = one("ONBUILD RUN <<EOF\necho hi\nEOF\n") else {
        panic!()
    };
    assert_eq!(o.expression, "RUN <<EOF\necho hi\nEOF");
    let Some(inner) = o.instruction else { panic!() };
    let InstructionKind::Run(r) = inner.kind else {
        panic!()
    };
    assert_eq!(r.heredocs[0].content, "echo hi\n");
}

#[test]
fn onbuild() {
    let InstructionKind::Onbuild(o) = one("ONBUILD   COPY --chown=1 . /app") else {
        panic!()
    };
    assert_eq!(o.expression, "COPY --chown=1 . /app");
    let inner = o.instruction.unwrap();
    assert_eq!(inner.original, "COPY --chown=1 . /app");
    assert_eq!(
        inner.kind,
        InstructionKind::Copy(Copy {
            chown: Some(s("1")),
            ..copy(&["."], "/app")
        })
    );
    // An unknown trigger is kept as text; Docker only checks it in the child build.
    let InstructionKind::Onbuild(o) = one("onbuild BOGUS x") else {
        panic!()
    };
    assert_eq!((o.expression.as_str(), o.instruction), ("BOGUS x", None));
}

#[test]
fn global_args_and_stages() {
    let df = parse("ARG A\nARG B=2 C\nFROM x\nARG A\nFROM y AS second\nRUN true\n").unwrap();
    assert_eq!(df.global_args.len(), 2);
    assert_eq!(
        df.global_arg_decls().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        vec!["A", "B", "C"]
    );
    assert_eq!(df.stages.len(), 2);
    assert_eq!(df.stages[0].instructions.len(), 1);
    assert_eq!(df.stages[1].name.as_deref(), Some("second"));
}

#[test]
fn error_messages() {
    let cases: &[(&str, &str, usize)] = &[
        ("", "file with no instructions", 1),
        ("# only a comment\n\n", "file with no instructions", 2),
        ("FROM a\nRUN x\nFOOBAR y\n", "dockerfile parse error on line 3: unknown instruction: FOOBAR", 3),
        ("FROM a\nRUNN x\n", "dockerfile parse error on line 2: unknown instruction: RUNN (did you mean RUN?)", 2),
        ("FROM a\ncopyy x y\n", "dockerfile parse error on line 2: unknown instruction: copyy (did you mean copy?)", 2),
        ("FROM a b\n", "dockerfile parse error on line 1: FROM requires either one or three arguments", 1),
        ("FROM\n", "dockerfile parse error on line 1: FROM requires either one or three arguments", 1),
        ("FROM a AS 1x\n", "dockerfile parse error on line 1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols", 1),
        ("FROM a x b\n", "dockerfile parse error on line 1: FROM requires either one or three arguments", 1),
        ("FROM --platfrm=x a\n", "dockerfile parse error on line 1: unknown flag: --platfrm (did you mean platform?)", 1),
        ("RUN x\n", "no build stage in current context", 1),
        ("FROM a AS x\nFROM b AS X\n", "duplicate stage name \"x\"", 2),
        ("ARG A\nENV B=1\nFROM x\n", "no build stage in current context", 2),
        ("FROM a\nCOPY onlyone\n", "dockerfile parse error on line 2: COPY requires at least two arguments, but only one was provided. Destination could not be determined", 2),
        ("FROM a\nADD x\n", "dockerfile parse error on line 2: ADD requires at least two arguments, but only one was provided. Destination could not be determined", 2),
        ("FROM a\nCOPY --badflag=1 a b\n", "dockerfile parse error on line 2: unknown flag: --badflag", 2),
        ("FROM a\nCOPY --from a b\n", "dockerfile parse error on line 2: missing a value on flag: --from", 2),
        ("FROM a\nCOPY a <<EOF\nx\nEOF\n", "dockerfile parse error on line 2: COPY cannot accept a heredoc as a destination", 2),
        ("FROM a\nENV\n", "dockerfile parse error on line 2: ENV requires at least one argument", 2),
        ("FROM a\nENV x\n", "ENV must have two arguments", 2),
        ("FROM a\nENV a=b c\n", "Syntax error - can't find = in \"c\". Must be of the form: name=value", 2),
        ("FROM a\nENV =b\n", "dockerfile parse error on line 2: ENV names can not be blank", 2),
        ("FROM a\nLABEL\n", "dockerfile parse error on line 2: LABEL requires at least one argument", 2),
        ("FROM a\nARG\n", "dockerfile parse error on line 2: ARG requires at least one argument", 2),
        ("FROM a\nARG =x\n", "dockerfile parse error on line 2: ARG names can not be blank", 2),
        ("FROM a\nUSER\n", "dockerfile parse error on line 2: USER requires exactly one argument", 2),
        ("FROM a\nWORKDIR\n", "dockerfile parse error on line 2: WORKDIR requires exactly one argument", 2),
        ("FROM a\nSTOPSIGNAL\n", "dockerfile parse error on line 2: STOPSIGNAL requires exactly one argument", 2),
        ("FROM a\nMAINTAINER\n", "dockerfile parse error on line 2: MAINTAINER requires exactly one argument", 2),
        ("FROM a\nEXPOSE\n", "dockerfile parse error on line 2: EXPOSE requires at least one argument", 2),
        ("FROM a\nVOLUME\n", "dockerfile parse error on line 2: VOLUME requires at least one argument", 2),
        ("FROM a\nVOLUME [\"\"]\n", "dockerfile parse error on line 2: VOLUME specified can not be an empty string", 2),
        ("FROM a\nSHELL /bin/sh -c\n", "dockerfile parse error on line 2: SHELL requires the arguments to be in JSON form", 2),
        ("FROM a\nSHELL []\n", "dockerfile parse error on line 2: SHELL requires at least one argument", 2),
        ("FROM a\nCMD [\"a\", 1]\n", "when using JSON array syntax, arrays must be comprised of strings only", 2),
        ("FROM a\nONBUILD\n", "dockerfile parse error on line 2: ONBUILD requires at least one argument", 2),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "dockerfile parse error on line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed", 2),
        ("FROM a\nONBUILD FROM x\n", "dockerfile parse error on line 2: FROM isn't allowed as an ONBUILD trigger", 2),
        ("FROM a\nONBUILD maintainer x\n", "dockerfile parse error on line 2: MAINTAINER isn't allowed as an ONBUILD trigger", 2),
        ("FROM a\nHEALTHCHECK\n", "dockerfile parse error on line 2: HEALTHCHECK requires at least one argument", 2),
        ("FROM a\nHEALTHCHECK NONE x\n", "dockerfile parse error on line 2: HEALTHCHECK NONE takes no arguments", 2),
        ("FROM a\nHEALTHCHECK CMD\n", "dockerfile parse error on line 2: Missing command after HEALTHCHECK CMD", 2),
        ("FROM a\nHEALTHCHECK FOO x\n", "dockerfile parse error on line 2: Unknown type \"FOO\" in HEALTHCHECK (try CMD)", 2),
        ("FROM a\nHEALTHCHECK --interval=0s CMD x\n", "dockerfile parse error on line 2: Interval \"interval\" cannot be less than 1ms", 2),
        ("FROM a\nHEALTHCHECK --timeout=5 CMD x\n", "dockerfile parse error on line 2: time: missing unit in duration \"5\"", 2),
        ("FROM a\nHEALTHCHECK --retries=0 CMD x\n", "dockerfile parse error on line 2: --retries must be at least 1 (not 0)", 2),
        ("FROM a\nHEALTHCHECK --retries=x CMD x\n", "dockerfile parse error on line 2: strconv.ParseInt: parsing \"x\": invalid syntax", 2),
        ("FROM a\nRUN --mount type=cache x\n", "dockerfile parse error on line 2: missing a value on flag: --mount", 2),
        ("FROM a\nRUN --net=host x\n", "dockerfile parse error on line 2: unknown flag: --net", 2),
        ("FROM a\nRUN <<EOF\nno end\n", "unterminated heredoc", 2),
        ("FROM a\nMAINTAINER --boo joe@example.com\n", "dockerfile parse error on line 2: unknown flag: --boo", 2),
        ("FROM a\nCOPY\t\n\t\tquux \\\n      bar\n", "dockerfile parse error on line 2: COPY requires at least two arguments, but only one was provided. Destination could not be determined", 2),
        ("# escape=x\nFROM a\n", "invalid escape token 'x' does not match ` or \\", 1),
        ("# escape=`\n# escape=\\\nFROM a\n", "only one escape parser directive can be used", 2),
        ("# syntax=a\n# syntax=b\nFROM a\n", "only one syntax parser directive can be used", 2),
        // File-level shaping errors anywhere win over instruction errors earlier in the file.
        ("FROM a\nFOO\nCMD [1]\n", "when using JSON array syntax, arrays must be comprised of strings only", 3),
        ("FROM a\nRUN a \\\n  b\nBOGUSWORD x\n", "dockerfile parse error on line 4: unknown instruction: BOGUSWORD", 4),
    ];
    for (text, want, line) in cases {
        let e = parse(text).map(|_| ()).unwrap_err();
        assert_eq!(e.to_string(), *want, "{text:?}");
        assert_eq!(e.line(), *line, "line of {text:?}");
    }
    assert_eq!(
        err("FROM a\nFOO\n"),
        "dockerfile parse error on line 2: unknown instruction: FOO (did you mean FROM?)"
    );
    let e = parse("FROM a\nBOGUSWORD\n").unwrap_err();
    assert_eq!(e.message(), "unknown instruction: BOGUSWORD");
}

#[test]
fn keywords_are_case_insensitive() {
    let df = parse("from a AS b\nRuN x\ncOpY a b\nenv A=1\n").unwrap();
    let kws: Vec<&str> = df.stages[0].instructions.iter().map(|i| i.keyword()).collect();
    assert_eq!(kws, vec!["RUN", "COPY", "ENV"]);
}

/// A tiny deterministic generator, so the robustness test needs no extra crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn never_panics_on_random_input() {
    const PIECES: &[&str] = &[
        "FROM ",
        "RUN ",
        "COPY ",
        "ADD ",
        "ONBUILD ",
        "HEALTHCHECK ",
        "ENV ",
        "ARG ",
        "LABEL ",
        "CMD ",
        "SHELL ",
        "VOLUME ",
        "EXPOSE ",
        "USER ",
        "WORKDIR ",
        "<<",
        "<<-",
        "EOF",
        "\"",
        "'",
        "\\",
        "`",
        "\n",
        "\r\n",
        "\t",
        " ",
        "#",
        "# escape=`\n",
        "# syntax=x\n",
        "$",
        "${",
        "}",
        "[",
        "]",
        ",",
        "=",
        "--",
        "--mount=",
        "--from=",
        "AS ",
        "x",
        "1",
        "é",
        "\u{feff}",
        "CMD",
        "NONE",
        ":",
        "-",
        "*",
        "?",
    ];
    // BERTH_FUZZ_ITERS runs a longer search by hand; the default keeps the suite fast.
    let iterations: usize = std::env::var("BERTH_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed = std::env::var("BERTH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = XorShift(seed);
    for _ in 0..iterations {
        let mut text = String::new();
        for _ in 0..rng.below(40) {
            text.push_str(PIECES[rng.below(PIECES.len())]);
        }
        let _ = parse(&text);
        let _ = crate::shell::expand(&text, &crate::shell::Env::new());
        let _ = crate::shell::Lexer::new('`').process_words(&text, &crate::shell::Env::new());
        let _ = crate::dockerignore::DockerIgnore::parse(&text).map(|d| d.matches("a/b"));
        if let Ok(df) = parse(&text) {
            let _ = crate::plan::plan(&df, None, &Default::default());
            let env = crate::shell::Env::from_key_values(["A=1", "B=x y"]);
            for stage in &df.stages {
                for i in &stage.instructions {
                    let _ = i.kind.expand(&env, df.escape());
                }
            }
        }
    }
    // Mutations of real Dockerfiles reach deeper than random text.
    let fixtures = [
        include_str!("testdata/docker.Dockerfile"),
        include_str!("testdata/health.Dockerfile"),
    ];
    for _ in 0..iterations / 3 {
        let mut chars: Vec<char> = fixtures[rng.below(fixtures.len())].chars().collect();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(chars.len() + 1);
            match rng.below(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                _ => {
                    let piece: Vec<char> = PIECES[rng.below(PIECES.len())].chars().collect();
                    chars.splice(at..at, piece);
                }
            }
        }
        let text: String = chars.into_iter().collect();
        if let Ok(df) = parse(&text) {
            let _ = crate::plan::plan(&df, Some("x"), &Default::default());
        }
    }
    for _ in 0..iterations * 2 / 3 {
        let bytes: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        let _ = parse_bytes(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = crate::shell::expand(&text, &crate::shell::Env::new());
        let _ = crate::dockerignore::DockerIgnore::parse(&text);
    }
}

/// BuildKit's `TestParseExtractsHeredoc`, at the line layer (bodies not yet chomped).
#[test]
fn buildkit_heredoc_table() {
    let text = "\nFROM alpine:3.6\n\nENV NAME=me\n\nRUN ls\n\nUSER <<INVALID\nINVALID\n\nRUN <<EMPTY\nEMPTY\n\nRUN 3<<EMPTY2\nEMPTY2\n\nRUN \"<<NOHEREDOC\"\n\nRUN <<INDENT\n\tfoo\n\tbar\nINDENT\n\nRUN <<-UNINDENT\n\tbaz\n\tquux\nUNINDENT\n\nRUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\n\nRUN <<-EXPAND\n\texpand $NAME\nEXPAND\n\nRUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n\nRUN <<COPY\necho hello world\necho foo bar\nCOPY\n\nRUN <<COMMENT\n# internal comment\necho hello world\necho foo bar # trailing comment\nCOMMENT\n\nRUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n\nCOPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\n\nCOPY <<EOF /quotes\n\"foo\"\n'bar'\nEOF\n\nCOPY <<X <<Y /dest\nY\nX\nX\nY\n\nRUN <<COMPLEX python3\nprint('hello world')\nCOMPLEX\n\nCOPY <<file.txt /dest\nhello world\nfile.txt\n\nRUN <<eo'f'\necho foo\neof\n\nRUN <<eo\\'f\necho foo\neo'f\n\nRUN <<'e'o\\'f\necho foo\neo'f\n\nRUN <<'one two'\necho bar\none two\n\nRUN <<$EOF\n$EOF\n\nRUN <<  EOF\nEOF\n\nRUN <<  EOF  > foo\nEOF\n\t";
    // (name, fd, expand, chomp, content) per instruction after FROM.
    type Doc<'a> = (&'a str, u32, bool, bool, &'a str);
    let want: Vec<Vec<Doc<'static>>> = vec![
        vec![],
        vec![],
        vec![],
        vec![],
        vec![("EMPTY", 0, true, false, "")],
        vec![("EMPTY2", 3, true, false, "")],
        vec![],
        vec![("INDENT", 0, true, false, "\tfoo\n\tbar\n")],
        vec![("UNINDENT", 0, true, true, "\tbaz\n\tquux\n")],
        vec![("UNINDENT2", 0, true, true, "\tbaz\n\tquux\n")],
        vec![("EXPAND", 0, true, true, "\texpand $NAME\n")],
        vec![("NOEXPAND", 0, false, true, "\tdon't expand $NAME\n")],
        vec![("COPY", 0, true, false, "echo hello world\necho foo bar\n")],
        vec![(
            "COMMENT",
            0,
            true,
            false,
            "# internal comment\necho hello world\necho foo bar # trailing comment\n",
        )],
        vec![("MOUNT", 0, true, false, "echo hello\n")],
        vec![
            ("FILE1", 0, true, false, "content 1\n"),
            ("FILE2", 0, true, false, "content 2\n"),
        ],
        vec![("EOF", 0, true, false, "\"foo\"\n'bar'\n")],
        vec![("X", 0, true, false, "Y\n"), ("Y", 0, true, false, "X\n")],
        vec![("COMPLEX", 0, true, false, "print('hello world')\n")],
        vec![("file.txt", 0, true, false, "hello world\n")],
        vec![("eof", 0, false, false, "echo foo\n")],
        vec![("eo'f", 0, true, false, "echo foo\n")],
        vec![("eo'f", 0, false, false, "echo foo\n")],
        vec![("one two", 0, false, false, "echo bar\n")],
        vec![("$EOF", 0, true, false, "")],
        vec![("EOF", 0, true, false, "")],
        vec![("EOF", 0, true, false, "")],
    ];
    let scanned = lines::scan(text).unwrap();
    assert_eq!(scanned.nodes.len(), want.len() + 1);
    for (i, docs) in want.iter().enumerate() {
        let node = &scanned.nodes[i + 1];
        let got: Vec<Doc<'_>> = node
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.fd, h.expand, h.chomp, h.content.as_str()))
            .collect();
        assert_eq!(&got, docs, "node {:?}", node.original);
    }
}

/// BuildKit's `TestParseHeredocHelpers` and `TestHeredocsFromLine`.
#[test]
fn buildkit_heredoc_helpers() {
    for src in [
        "<<EOF",
        "<<'EOF'",
        "<<\"EOF\"",
        "<<-EOF",
        "<<-'EOF'",
        "<<-\"EOF\"",
        "<<EO\"F\"",
        "<< EOF",
        "<<- EOF",
    ] {
        assert_eq!(
            lines::parse_heredoc_word(src).unwrap().unwrap().name,
            "EOF",
            "{src}"
        );
    }
    for src in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
        assert!(lines::parse_heredoc_word(src).is_err(), "{src}");
    }
    for src in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
        assert_eq!(lines::parse_heredoc_word(src).unwrap(), None, "{src}");
    }
    let cases: &[(&str, &[&str])] = &[
        ("RUN <<EOF", &["EOF"]),
        ("RUN <<-EOF", &["EOF"]),
        ("RUN << -EOF", &["-EOF"]),
        ("RUN <<'EOF'", &["EOF"]),
        ("RUN 4<<EOF", &["EOF"]),
        ("RUN <<EOF <<EOF2", &["EOF", "EOF2"]),
        ("RUN '<<EOF'", &[]),
        ("RUN \"<<EOF\"", &[]),
    ];
    for (line, names) in cases {
        let docs = lines::heredocs_from_line(line).unwrap();
        assert_eq!(
            docs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            *names,
            "{line}"
        );
    }
}

/// The line layer printed as BuildKit's `Node.Dump()` prints it.
fn dump(text: &str) -> String {
    let scanned = lines::scan(text).unwrap();
    let mut out = String::new();
    for node in &scanned.nodes {
        let args = instructions::line_parse(node, scanned.directives.escape).unwrap();
        let mut line = node.keyword.to_lowercase();
        if !node.flags.is_empty() {
            let flags: Vec<String> = node.flags.iter().map(|f| words::go_quote(f)).collect();
            line.push_str(&format!(" [{}]", flags.join(" ")));
        }
        for arg in &args.args {
            line.push(' ');
            line.push_str(&words::go_quote(arg));
        }
        out.push('(');
        out.push_str(&line);
        out.push_str(")\n");
    }
    out
}

/// BuildKit's parser `testfiles` (docker, trimmed; health) compared with their `result` dumps.
#[test]
fn buildkit_testfiles() {
    assert_eq!(
        dump(include_str!("testdata/docker.Dockerfile")),
        include_str!("testdata/docker.result")
    );
    assert_eq!(
        dump(include_str!("testdata/health.Dockerfile")),
        include_str!("testdata/health.result")
    );
}

/// BuildKit's `TestParseWords`.
#[test]
fn buildkit_parse_words() {
    let cases: &[(&str, &[&str])] = &[
        ("foo", &["foo"]),
        ("foo bar", &["foo", "bar"]),
        ("foo\\ bar", &["foo\\ bar"]),
        ("foo=bar", &["foo=bar"]),
        ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
        ("foo bar \"abc xyz\"", &["foo", "bar", "\"abc xyz\""]),
        ("àöû", &["àöû"]),
        ("föo bàr \"âbc xÿz\"", &["föo", "bàr", "\"âbc xÿz\""]),
    ];
    for (input, want) in cases {
        assert_eq!(words::parse_words(input, '\\'), sv(want), "{input}");
    }
}

/// BuildKit's `TestParseWarnsOnEmptyContinutationLine`.
#[test]
fn buildkit_empty_continuation_warnings() {
    let text = "\nFROM alpine:3.6\n\nRUN valid \\\n    continuation\n\nRUN something \\\n\n    following \\\n\n    more\n\nRUN another \\\n\n    thing\n\nRUN non-indented \\\n# this is a comment\n   after-comment\n\nRUN indented \\\n    # this is an indented comment\n    comment\n\t";
    let df = parse(text).unwrap();
    assert_eq!(df.warnings.len(), 3);
    assert!(df.warnings[0].contains("Empty continuation line found in"));
    assert!(df.warnings[0].contains("RUN something     following     more"));
    assert!(df.warnings[1].contains("RUN another     thing"));
    assert!(df.warnings[2].contains("will become errors in a future release"));
}

#[test]
fn expanding_instructions_with_the_step_environment() {
    use crate::shell::Env;
    let env = Env::from_key_values([
        "SRCS=a b",
        "PORTS=80 443/udp",
        "U=app",
        "D=/srv",
        "NAME=web",
        "Q=quoted",
    ]);
    let df = parse(
        "FROM x\nCOPY --chown=$U $SRCS $D/dir\nEXPOSE $PORTS 8080\nENV \"K$NAME\"=\"v $U\" other='$U'\n\
         LABEL app=$NAME\nUSER ${U}:${U}\nWORKDIR $D/${NAME}\nVOLUME [\"$D/data\"]\nSTOPSIGNAL ${SIG:-SIGQUIT}\n\
         ARG V=$D\nRUN echo $U\nCMD echo $U\nCOPY <<EOF <<'RAW' /d/\n\"$Q\" ${U}\nEOF\n$Q\nRAW\n",
    )
    .unwrap();
    let got: Vec<InstructionKind> = df.stages[0]
        .instructions
        .iter()
        .map(|i| i.kind.expand(&env, df.escape()).unwrap())
        .collect();
    assert_eq!(
        got[0],
        InstructionKind::Copy(Copy {
            chown: Some(s("app")),
            ..copy(&["a b"], "/srv/dir")
        })
    );
    assert_eq!(got[1], InstructionKind::Expose(sv(&["80", "443/udp", "8080"])));
    assert_eq!(
        got[2],
        InstructionKind::Env(kv(&[("Kweb", "v app"), ("other", "$U")]))
    );
    assert_eq!(got[3], InstructionKind::Label(kv(&[("app", "web")])));
    assert_eq!(got[4], InstructionKind::User(s("app:app")));
    assert_eq!(got[5], InstructionKind::Workdir(s("/srv/web")));
    assert_eq!(got[6], InstructionKind::Volume(sv(&["/srv/data"])));
    assert_eq!(got[7], InstructionKind::StopSignal(s("SIGQUIT")));
    assert_eq!(
        got[8],
        InstructionKind::Arg(vec![ArgDecl {
            name: s("V"),
            default: Some(s("/srv"))
        }])
    );
    assert_eq!(got[9], InstructionKind::Run(run_of("echo $U")));
    assert_eq!(got[10], InstructionKind::Cmd(CommandLine::Shell(s("echo $U"))));
    let InstructionKind::Copy(c) = &got[11] else {
        panic!()
    };
    let bodies: Vec<&str> = c
        .sources
        .iter()
        .map(|src| match src {
            Source::Heredoc(h) => h.content.as_str(),
            Source::Path(p) => p.as_str(),
        })
        .collect();
    assert_eq!(bodies, vec!["\"quoted\" app\n", "$Q\n"]);
    assert!(InstructionKind::User(s("${X:?need X}"))
        .expand(&env, '\\')
        .is_err());
}
