use super::*;
use crate::dockerfile::parse;

fn args(pairs: &[(&str, Option<&str>)]) -> BuildArgs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

fn plan_amd64(text: &str, target: Option<&str>, build_args: &BuildArgs) -> Result<BuildPlan, PlanError> {
    plan_for_platforms(&parse(text).unwrap(), target, build_args, &amd64(), &amd64())
}

const MULTI: &str = "\
ARG GO=1.22
ARG UNUSED_GLOBAL
FROM golang:${GO} AS build
ARG VERSION=dev
RUN go build
FROM alpine AS tools
RUN apk add curl
FROM build AS test
RUN go test
FROM scratch AS final
COPY --from=build /out/app /app
RUN --mount=type=bind,from=tools,source=/usr/bin/curl,target=/curl true
COPY --from=nginx:latest /etc/nginx /etc/nginx
";

#[test]
fn default_target_is_last_stage_and_unused_stages_are_skipped() {
    let p = plan_amd64(MULTI, None, &BuildArgs::new()).unwrap();
    assert_eq!(p.target, 3);
    let order: Vec<usize> = p.stages.iter().map(|s| s.index).collect();
    assert_eq!(order, vec![0, 1, 3], "the test stage is not needed");
    assert_eq!(p.stages[0].base, BaseRef::Image("golang:1.22".into()));
    assert_eq!(p.stages[2].base, BaseRef::Scratch);
    assert_eq!(p.stages[2].depends_on, vec![0, 1]);
    assert_eq!(p.stages[2].images, vec!["nginx:latest".to_string()]);
    assert!(p.unused_build_args.is_empty());
    // 2 global ARGs + build (FROM + 2) + tools (FROM + 1) + final (FROM + 3).
    assert_eq!(p.step_count(&parse(MULTI).unwrap()), 11);
}

#[test]
fn target_selects_a_stage_and_its_dependencies() {
    let p = plan_amd64(MULTI, Some("TEST"), &BuildArgs::new()).unwrap();
    assert_eq!(p.target, 2);
    let names: Vec<_> = p.stages.iter().map(|s| s.name.clone().unwrap()).collect();
    assert_eq!(names, vec!["build", "test"]);
    assert_eq!(p.stages[1].base, BaseRef::Stage(0));

    let p = plan_amd64(MULTI, Some("tools"), &BuildArgs::new()).unwrap();
    assert_eq!(p.stages.iter().map(|s| s.index).collect::<Vec<_>>(), vec![1]);

    let e = plan_amd64(MULTI, Some("nope"), &BuildArgs::new()).unwrap_err();
    assert_eq!(e.to_string(), "target stage \"nope\" could not be found");
}

#[test]
fn build_args_override_global_defaults_and_unused_ones_are_reported() {
    let given = args(&[
        ("GO", Some("1.23")),
        ("VERSION", Some("2")),
        ("NOPE", Some("x")),
        ("HTTP_PROXY", Some("p")),
        ("ZZZ", None),
    ]);
    let p = plan_amd64(MULTI, Some("tools"), &given).unwrap();
    assert_eq!(p.meta_args.get("GO"), Some("1.23"));
    // VERSION is declared only in the build stage, which the tools target does not need.
    assert_eq!(p.unused_build_args, vec!["NOPE", "VERSION", "ZZZ"]);
    assert_eq!(
        p.unused_build_args_warning().unwrap(),
        "[Warning] One or more build-args [NOPE VERSION ZZZ] were not consumed"
    );
    let p = plan_amd64(MULTI, None, &given).unwrap();
    assert_eq!(p.unused_build_args, vec!["NOPE", "ZZZ"]);
    assert_eq!(p.stages[0].base, BaseRef::Image("golang:1.23".into()));
    let p = plan_amd64(MULTI, None, &args(&[("UNUSED_GLOBAL", Some("1"))])).unwrap();
    assert_eq!(p.unused_build_args_warning(), None);
}

#[test]
fn global_args_expand_in_order_with_platform_args() {
    let text = "ARG A=x\nARG B=${A}-y\nARG C\nFROM --platform=$BUILDPLATFORM img:${B}-${TARGETARCH}${C:-z}\n";
    let p = plan_amd64(text, None, &BuildArgs::new()).unwrap();
    assert_eq!(p.stages[0].base, BaseRef::Image("img:x-y-amd64z".into()));
    assert_eq!(p.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(p.meta_args.get("C"), None);
    let arm = Platform::parse("linux/arm/v7").unwrap();
    let p = plan_for_platforms(
        &parse(text).unwrap(),
        None,
        &args(&[("A", Some("q"))]),
        &amd64(),
        &arm,
    )
    .unwrap();
    assert_eq!(p.stages[0].base, BaseRef::Image("img:q-y-armz".into()));
    assert_eq!(p.meta_args.get("TARGETPLATFORM"), Some("linux/arm/v7"));
    assert_eq!(p.meta_args.get("TARGETVARIANT"), Some("v7"));
    assert_eq!(p.meta_args.get("BUILDOS"), Some("linux"));
}

#[test]
fn stage_references_by_index_and_errors() {
    let p = plan_amd64("FROM a\nFROM b\nCOPY --from=0 /x /y\n", None, &BuildArgs::new()).unwrap();
    assert_eq!(p.stages.iter().map(|s| s.index).collect::<Vec<_>>(), vec![0, 1]);

    let cases: &[(&str, &str)] = &[
        (
            "FROM a AS one\nCOPY --from=one /x /y\n",
            "circular dependency detected on stage: one",
        ),
        (
            "FROM a\nCOPY --from=0 /x /y\n",
            "circular dependency detected on stage: 0",
        ),
        (
            "FROM a AS x\nFROM x AS x2\nFROM z AS z\n",
            "circular dependency detected on stage: z",
        ),
        (
            "FROM a\nCOPY --from=later /x /y\nFROM b AS later\n",
            "stage 0 refers to \"later\", a stage defined after it",
        ),
        (
            "FROM a AS first\nRUN --mount=from=1 true\nFROM b\n",
            "stage first refers to \"1\", a stage defined after it",
        ),
        (
            "FROM later\nFROM b AS later\n",
            "stage 0 refers to \"later\", a stage defined after it",
        ),
        ("ARG IMG\nFROM ${IMG}\n", "base name (${IMG}) should not be blank"),
        (
            "FROM a\nFROM b\nCOPY --from=7 /x /y\n",
            "invalid from flag value 7: index out of bounds",
        ),
        (
            "FROM ${IMG:?required}\n",
            "dockerfile parse error on line 1: failed to process \"${IMG:?required}\": IMG: required",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(
            plan_amd64(text, None, &BuildArgs::new()).unwrap_err().to_string(),
            *want,
            "{text:?}"
        );
    }
}

#[test]
fn copy_from_is_expanded_with_global_args() {
    let p = plan_amd64(
        "ARG SRC=builder\nFROM a AS builder\nFROM b\nCOPY --from=$SRC /x /y\n",
        None,
        &BuildArgs::new(),
    )
    .unwrap();
    assert_eq!(p.stages[1].depends_on, vec![0]);
}

#[test]
fn stage_arg_resolution() {
    let df = parse("ARG V=global\nFROM a\nARG V\nARG W=${V}-w\n").unwrap();
    let p = plan_for_platforms(&df, None, &BuildArgs::new(), &amd64(), &amd64()).unwrap();
    let decl = |name: &str, default: Option<&str>| ArgDecl {
        name: name.into(),
        default: default.map(str::to_string),
    };
    let mut stage_env = Env::new();
    let none = BuildArgs::new();
    // A redeclared global ARG without a value inherits the global value.
    assert_eq!(
        resolve_stage_arg(&decl("V", None), &none, &p.meta_args, &stage_env, '\\')
            .unwrap()
            .as_deref(),
        Some("global")
    );
    stage_env.set("V", "global");
    assert_eq!(
        resolve_stage_arg(&decl("W", Some("${V}-w")), &none, &p.meta_args, &stage_env, '\\')
            .unwrap()
            .as_deref(),
        Some("global-w")
    );
    let given = args(&[("W", Some("cli")), ("U", None)]);
    assert_eq!(
        resolve_stage_arg(&decl("W", Some("x")), &given, &p.meta_args, &stage_env, '\\')
            .unwrap()
            .as_deref(),
        Some("cli")
    );
    // Given without a value keeps the default; no default and no global leaves it unset.
    assert_eq!(
        resolve_stage_arg(&decl("U", Some("d")), &given, &p.meta_args, &stage_env, '\\')
            .unwrap()
            .as_deref(),
        Some("d")
    );
    assert_eq!(
        resolve_stage_arg(&decl("Q", None), &given, &p.meta_args, &stage_env, '\\').unwrap(),
        None
    );
    assert_eq!(
        resolve_stage_arg(&decl("TARGETOS", None), &none, &p.meta_args, &stage_env, '\\')
            .unwrap()
            .as_deref(),
        Some("linux")
    );
}

#[test]
fn platforms() {
    assert_eq!(Platform::parse("linux/arm64").unwrap().to_string(), "linux/arm64");
    assert_eq!(
        Platform::parse("Linux/ARM/v7").unwrap().variant.as_deref(),
        Some("v7")
    );
    assert_eq!(Platform::parse("linux"), None);
    assert_eq!(Platform::parse("a/b/c/d"), None);
    let host = Platform::host();
    assert_eq!(host.os, "linux");
    assert!(!host.architecture.is_empty());
    let env = platform_args(&amd64(), &amd64());
    for name in PLATFORM_ARGS {
        assert!(env.get(name).is_some(), "{name}");
    }
    assert!(is_builtin_arg("https_proxy") && !is_builtin_arg("HOME"));
}
