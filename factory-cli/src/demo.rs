//! `factory demo`: a sample Python repository with its own tests, a scripted agent that plays
//! every role, and a 3-task epic run through the real store, git and verify path.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::render;
use factory_workspace::{AgentSetup, InitOptions, Workspace};

/// The sample repository before Factory touches it.
const SAMPLE_FILES: &[(&str, &str)] = &[
    (
        "README.md",
        "# textkit\n\nSmall text utilities. Run the tests with `python3 -m unittest discover -s tests -t .`\n",
    ),
    (".gitignore", "__pycache__/\n*.pyc\n"),
    ("textkit/__init__.py", "\"\"\"Small text utilities.\"\"\"\n"),
    (
        "textkit/words.py",
        "def word_count(text):\n    \"\"\"Number of whitespace-separated words in text.\"\"\"\n    return len(text.split())\n",
    ),
    ("tests/__init__.py", ""),
    (
        "tests/test_words.py",
        "import unittest\n\nfrom textkit.words import word_count\n\n\nclass WordCountTest(unittest.TestCase):\n    def test_counts_words(self):\n        self.assertEqual(word_count(\"a b  c\"), 3)\n\n    def test_empty(self):\n        self.assertEqual(word_count(\"\"), 0)\n",
    ),
];

/// The verify command of the sample repository.
pub const VERIFY: &str = "python3 -m unittest discover -s tests -t .";

/// What the demo asks for.
pub const EPIC: &str = "Add text utilities to textkit\n\nAdd slugify(text) and title_case(text) functions, \
then a command line (`python3 -m textkit slug|title|count TEXT`) that uses them. Every function needs tests.";

/// The scripted agent: the plan, each worker round's edits and each review round's verdict.
/// The title-case task fails review once (no tests, small words capitalized) and passes after
/// the fix round.
pub const SCRIPT: &str = r#####"
[plan]
reasoning = "Two independent functions first so they can be built in parallel; the command line needs both, so it waits for them."

[[plan.tasks]]
key = "slugify"
title = "Add slugify function"
description = "Add textkit/slug.py with slugify(text): lowercase words joined by dashes, punctuation dropped."
acceptance = ["slugify('Hello, World!') == 'hello-world'", "tests in tests/test_slug.py"]

[[plan.tasks]]
key = "titlecase"
title = "Add title_case function"
description = "Add textkit/title.py with title_case(text): capitalize words, keep small words lowercase unless first."
acceptance = ["title_case('the lord of the rings') == 'The Lord of the Rings'", "tests in tests/test_title.py"]

[[plan.tasks]]
key = "cli"
title = "Add textkit command line"
description = "Add textkit/__main__.py: `python3 -m textkit slug|title|count TEXT` prints the result."
acceptance = ["each subcommand prints its result", "bad usage exits 2 with a usage line", "tests in tests/test_cli.py"]
depends_on = ["slugify", "titlecase"]

[[tasks.slugify.rounds]]
notes = ["DECISION: one regex over the lowercased text -- handles punctuation and repeated spaces in one pass"]

[[tasks.slugify.rounds.edits]]
path = "textkit/slug.py"
write = '''
import re


def slugify(text):
    """Lowercase words joined by dashes: 'Hello, World!' -> 'hello-world'."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))
'''

[[tasks.slugify.rounds.edits]]
path = "tests/test_slug.py"
write = '''
import unittest

from textkit.slug import slugify


class SlugifyTest(unittest.TestCase):
    def test_punctuation_and_case(self):
        self.assertEqual(slugify("Hello, World!"), "hello-world")

    def test_repeated_spaces(self):
        self.assertEqual(slugify("  a   b "), "a-b")

    def test_empty(self):
        self.assertEqual(slugify(""), "")
'''

[[tasks.slugify.reviews]]
verdict = "approve"
summary = "slugify handles punctuation, case and whitespace; the tests cover each."

[[tasks.titlecase.rounds]]
notes = ["DECISION: str.capitalize per word -- simplest thing that could work"]

[[tasks.titlecase.rounds.edits]]
path = "textkit/title.py"
write = '''
def title_case(text):
    """Capitalize every word."""
    return " ".join(word.capitalize() for word in text.split())
'''

[[tasks.titlecase.rounds]]
notes = [
    "DECISION: keep a fixed set of small words lowercase except the first -- matches common English title style",
    "MAIL: title_case now keeps small words lowercase; tell me if you want a different word list.",
]

[[tasks.titlecase.rounds.edits]]
path = "textkit/title.py"
write = '''
SMALL_WORDS = {"a", "an", "and", "as", "at", "but", "by", "for", "in", "of", "on", "or", "the", "to"}


def title_case(text):
    """Capitalize words, keeping small words lowercase unless they come first."""
    words = text.lower().split()
    return " ".join(
        word if i > 0 and word in SMALL_WORDS else word.capitalize()
        for i, word in enumerate(words)
    )
'''

[[tasks.titlecase.rounds.edits]]
path = "tests/test_title.py"
write = '''
import unittest

from textkit.title import title_case


class TitleCaseTest(unittest.TestCase):
    def test_small_words_stay_lowercase(self):
        self.assertEqual(title_case("the lord of the rings"), "The Lord of the Rings")

    def test_first_word_is_capitalized(self):
        self.assertEqual(title_case("a tale"), "A Tale")

    def test_shouting_is_calmed(self):
        self.assertEqual(title_case("HELLO WORLD"), "Hello World")
'''

[[tasks.titlecase.reviews]]
verdict = "changes_requested"
summary = "title_case capitalizes every word, so 'of' and 'the' come out wrong, and there are no tests."
issues = [
    "Keep small words (a, an, and, of, the, to, ...) lowercase unless they come first",
    "Add tests in tests/test_title.py",
]

[[tasks.titlecase.reviews]]
verdict = "approve"
summary = "Small words stay lowercase and the tests cover first-word and all-caps input."

[[tasks.cli.rounds]]
notes = ["DECISION: dispatch on the first argument -- three subcommands do not need argparse"]

[[tasks.cli.rounds.edits]]
path = "textkit/__main__.py"
write = '''
import sys

from textkit.slug import slugify
from textkit.title import title_case
from textkit.words import word_count

COMMANDS = {"slug": slugify, "title": title_case, "count": word_count}


def main(argv):
    if len(argv) != 2 or argv[0] not in COMMANDS:
        print("usage: python3 -m textkit slug|title|count TEXT", file=sys.stderr)
        return 2
    print(COMMANDS[argv[0]](argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''

[[tasks.cli.rounds.edits]]
path = "tests/test_cli.py"
write = '''
import contextlib
import io
import unittest

from textkit.__main__ import main


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue().strip(), err.getvalue()


class CliTest(unittest.TestCase):
    def test_slug(self):
        self.assertEqual(run(["slug", "Hello, World!"])[:2], (0, "hello-world"))

    def test_title(self):
        self.assertEqual(run(["title", "the art of war"])[:2], (0, "The Art of War"))

    def test_count(self):
        self.assertEqual(run(["count", "one two three"])[:2], (0, "3"))

    def test_bad_usage(self):
        code, _, err = run(["shout", "x"])
        self.assertEqual(code, 2)
        self.assertIn("usage", err)
'''

[[tasks.cli.reviews]]
verdict = "approve"
summary = "The command line wires all three functions and reports bad usage with exit 2."
"#####;

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .context("cannot run git: install git and make sure it is on PATH")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates the sample repository at `dir` with one commit on `main`.
pub fn create_sample_repo(dir: &Path) -> Result<()> {
    for (path, text) in SAMPLE_FILES {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    git(dir, &["init", "-q", "-b", "main"])?;
    git(dir, &["config", "user.name", "Factory Demo"])?;
    git(dir, &["config", "user.email", "demo@factory.invalid"])?;
    git(dir, &["config", "commit.gpgsign", "false"])?;
    git(dir, &["add", "-A"])?;
    git(
        dir,
        &["commit", "-q", "-m", "textkit: word_count and its tests"],
    )?;
    Ok(())
}

fn demo_dir(dir: Option<PathBuf>) -> Result<PathBuf> {
    let dir = match dir {
        Some(d) => d,
        None => {
            let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
            std::env::temp_dir().join(format!("factory-demo-{stamp}-{}", std::process::id()))
        }
    };
    if dir.exists() {
        let mut entries = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}: pass a new --dir", dir.display()))?;
        if entries.next().is_some() {
            bail!("{} is not empty: pass a new or empty --dir", dir.display());
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}

/// `factory demo`.
pub async fn run(dir: Option<PathBuf>) -> Result<ExitCode> {
    let started = Instant::now();
    let dir = demo_dir(dir)?;
    println!("Sample repository: {}", dir.display());
    create_sample_repo(&dir)?;
    Workspace::init(
        &dir,
        InitOptions {
            main_branch: Some("main".into()),
            verify: Some(VERIFY.into()),
            agent: AgentSetup::Scripted {
                file: "demo-script.toml".into(),
                script: SCRIPT.into(),
            },
        },
    )
    .await?;
    let ws = Workspace::open(&dir).await?;
    ws.require_agents()?;
    let epic = ws.factory().add_epic(EPIC).await?;
    println!("Epic {}: {}", epic.id, epic.title);
    let end = render::run_with_progress(&ws, ws.run_options("factory demo")).await?;
    let code = render::run_outcome(&end, None);
    if end.report.stopped {
        return Ok(code);
    }
    let report = &end.report;

    let merges = git(&dir, &["rev-list", "--merges", "--count", "main"])?;
    let tests = std::process::Command::new("sh")
        .args(["-c", VERIFY])
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .context("cannot run the sample's tests")?;
    let tests_ok = tests.status.success();
    let tasks: Vec<_> = ws
        .factory()
        .tasks()
        .await?
        .into_iter()
        .filter(|t| t.epic_id == epic.id)
        .collect();
    println!();
    println!("Demo summary");
    println!(
        "  tasks       {} planned, {} merged",
        tasks.len(),
        report.merged.len()
    );
    for t in &tasks {
        println!("              {} ({} QA round(s))", t.spec_id, t.qa_rounds);
    }
    println!(
        "  merges      {} --no-ff merge commit(s) on main",
        merges.trim()
    );
    println!("  QA rounds   {}", report.qa_rounds);
    println!("  main tests  {}", if tests_ok { "pass" } else { "FAIL" });
    println!("  time        {:.1} s", started.elapsed().as_secs_f64());
    println!();
    println!("Look around:");
    println!("  cd {}", dir.display());
    println!("  git log --graph --oneline main");
    println!(
        "  factory status; factory spec show 002 --file qa_report.md; factory log 002; factory decisions; factory mail"
    );
    if !tests_ok {
        eprintln!(
            "error: the sample's tests fail on main: {}",
            String::from_utf8_lossy(&tests.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(code)
}
