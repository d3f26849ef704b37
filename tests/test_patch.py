"""Unified diffs: exact round trips, and the sloppy diffs an LLM writes."""

from __future__ import annotations

import pytest

from gitevo.variation.patch import FilePatch, PatchError, apply_diff, make_diff, parse_diff

TOY = '''"""Toy genome."""

import math


def wave(x):
    return math.sin(1.0 * x)


def trend(x):
    # a straight line
    return 0.2 * x


def predict(x):
    return 1.5 * math.sin(2.0 * x) + 0.3 * x
'''

FILES = {"model.py": TOY, "train.py": "print('train')\n"}
ALLOWED = {"model.py"}

WANT = TOY.replace("math.sin(1.0 * x)", "math.cos(1.0 * x)").replace("0.3 * x", "0.4 * x")


def apply(text: str, default_path: str | None = None) -> str:
    return apply_diff(text, FILES, ALLOWED, default_path=default_path)["model.py"]


def test_make_diff_is_a_git_style_unified_diff():
    diff = make_diff("model.py", TOY, WANT)
    assert diff.startswith("--- a/model.py\n+++ b/model.py\n@@ -")
    assert "-    return math.sin(1.0 * x)\n+    return math.cos(1.0 * x)\n" in diff
    assert make_diff("model.py", TOY, TOY) == ""


def test_round_trip_reproduces_the_new_text_exactly():
    assert apply(make_diff("model.py", TOY, WANT)) == WANT


@pytest.mark.parametrize("old", [TOY.rstrip("\n"), TOY.replace("\n", "\r\n"),
                                 TOY.replace("\n", "\r\n").rstrip("\r\n")])
def test_round_trip_line_endings_and_missing_final_newline(old):
    eol = "\r\n" if "\r\n" in old else "\n"
    cases = [old.replace("0.3 * x", "0.4 * x"), old + eol + "EXTRA = 1", old + eol,
             "# header" + eol + old, old.replace("import math" + eol, "")]
    for new in cases:
        diff = make_diff("model.py", old, new)
        assert apply_diff(diff, {"model.py": old}, ALLOWED) == {"model.py": new}


def test_parse_diff_reads_files_and_hunks():
    [patch] = parse_diff(make_diff("model.py", TOY, WANT))
    assert isinstance(patch, FilePatch) and patch.path == "model.py"
    assert len(patch.hunks) == 2
    tags = [tag for tag, _ in patch.hunks[0].lines]
    assert set(tags) == {" ", "-", "+"}
    assert ("+", "    return math.cos(1.0 * x)") in patch.hunks[0].lines


SLOPPY = '''Sure! Here is the improved version:

```diff
--- model.py
+++ model.py
@@ -40,2 +40,2 @@ def wave(x):
 def wave(x):
-    return math.sin(1.0 * x)
+    return math.cos(1.0 * x)
@@ @@
 def predict(x):
-    return 1.5 * math.sin(2.0 * x) + 0.3 * x
+    return 1.5 * math.sin(2.0 * x) + 0.4 * x
```

The cosine should fit the phase better.
'''


def test_prose_fences_wrong_numbers_and_bare_hunk_headers():
    assert apply(SLOPPY) == WANT


def test_wrong_line_counts_are_recounted():
    diff = make_diff("model.py", TOY, WANT)
    skewed = diff.replace("@@ -4,7 +4,7 @@", "@@ -4,2 +4,99 @@")
    assert skewed != diff
    assert apply(skewed) == WANT


def test_missing_file_header_uses_default_path():
    body = SLOPPY[SLOPPY.index("@@ -40"):SLOPPY.index("```\n\nThe")]
    assert apply(body, default_path="model.py") == WANT
    with pytest.raises(PatchError) as err:
        apply(body)
    assert err.value.reason == "no-path"


def test_blank_context_line_without_its_space():
    diff = "@@ -9,4 +9,4 @@\n def trend(x):\n     # a straight line\n-    return 0.2 * x\n" \
           "+    return 0.25 * x\n\n\n"
    assert apply(diff, default_path="model.py") == TOY.replace("0.2 * x", "0.25 * x")
    diff = "@@ -10,4 +10,4 @@\n-    return 0.2 * x\n+    return 0.25 * x\n\n \n def predict(x):\n"
    assert apply(diff, default_path="model.py") == TOY.replace("0.2 * x", "0.25 * x")


def test_whitespace_drift_in_context_keeps_the_files_bytes():
    # the context lost its indentation and gained trailing blanks; the file's lines win
    diff = ("--- a/model.py\n+++ b/model.py\n@@ -9,3 +9,3 @@\n def trend(x):   \n"
            " # a straight line\n-  return 0.2 * x\n+    return 0.5 * x\n")
    assert apply(diff) == TOY.replace("0.2 * x", "0.5 * x")


def test_several_hunks_in_order_and_nearest_to_stated_line():
    source = "".join(f"def f{i}(x):\n    return x\n\n\n" for i in range(6))
    diff = "--- a/m.py\n+++ b/m.py\n@@ -10,1 +10,1 @@\n-    return x\n+    return 2 * x\n" \
           "@@ -18,1 +18,1 @@\n-    return x\n+    return 3 * x\n"
    out = apply_diff(diff, {"m.py": source}, {"m.py"})["m.py"]
    returns = [line.strip() for line in out.splitlines() if "return" in line]
    assert returns == ["return x", "return x", "return 2 * x", "return x", "return 3 * x",
                       "return x"]


def test_hunks_without_numbers_go_after_the_previous_hunk():
    source = "".join(f"def f{i}(x):\n    return x\n\n\n" for i in range(3))
    diff = "@@ @@\n-    return x\n+    return 2 * x\n@@ @@\n-    return x\n+    return 3 * x\n"
    out = apply_diff(diff, {"m.py": source}, {"m.py"}, default_path="m.py")["m.py"]
    returns = [line.strip() for line in out.splitlines() if "return" in line]
    assert returns == ["return 2 * x", "return 3 * x", "return x"]


@pytest.mark.parametrize("path", ["train.py", "../x.py", "/etc/passwd", ".git/config",
                                  "sub/../../x.py", "hooks/.git/HEAD"])
def test_protected_paths_are_refused(path):
    diff = f"--- a/{path}\n+++ b/{path}\n@@ -1,1 +1,1 @@\n-print('train')\n+print('hacked')\n"
    for text in (diff, diff.replace("a/", "").replace("b/", "")):
        with pytest.raises(PatchError) as err:
            apply_diff(text, FILES, ALLOWED)
        assert err.value.reason == "protected-path"


def test_protected_path_message_and_all_or_nothing():
    good = make_diff("model.py", TOY, WANT)
    bad = make_diff("train.py", FILES["train.py"], "print('hacked')\n")
    with pytest.raises(PatchError, match="edits protected path 'train.py'") as err:
        apply_diff(good + bad, FILES, ALLOWED)
    assert err.value.reason == "protected-path"


def test_new_and_deleted_files_are_refused():
    new = "--- /dev/null\n+++ b/model2.py\n@@ -0,0 +1,1 @@\n+x = 1\n"
    with pytest.raises(PatchError) as err:
        apply_diff(new, FILES, {"model.py", "model2.py"})
    assert err.value.reason == "new-file"
    git_new = "diff --git a/m2.py b/m2.py\nnew file mode 100644\nindex 0000000..e69de29\n" \
              "--- /dev/null\n+++ b/m2.py\n@@ -0,0 +1 @@\n+x = 1\n"
    with pytest.raises(PatchError) as err:
        apply_diff(git_new, FILES, {"model.py", "m2.py"})
    assert err.value.reason == "new-file"
    gone = "--- a/model.py\n+++ /dev/null\n@@ -1,1 +0,0 @@\n-\"\"\"Toy genome.\"\"\"\n"
    with pytest.raises(PatchError) as err:
        apply_diff(gone, FILES, ALLOWED)
    assert err.value.reason == "delete-file"


def test_context_mismatch_names_file_and_first_unmatched_line():
    diff = ("--- a/model.py\n+++ b/model.py\n@@ -9,3 +9,3 @@\n def trend(x):\n"
            "     # a curved line\n-    return 0.2 * x\n+    return 0.5 * x\n")
    with pytest.raises(PatchError) as err:
        apply_diff(diff, FILES, ALLOWED)
    assert err.value.reason == "context-mismatch"
    assert "model.py" in str(err.value) and "# a curved line" in str(err.value)


def test_text_without_a_diff():
    with pytest.raises(PatchError) as err:
        apply_diff("I could not think of an improvement.", FILES, ALLOWED, "model.py")
    assert err.value.reason == "no-diff"


def test_git_diff_with_extended_headers():
    diff = make_diff("model.py", TOY, WANT).replace(
        "--- a/model.py", "diff --git a/model.py b/model.py\nindex 83db48f..bf269f4 100644\n"
        "--- a/model.py", 1)
    assert apply(diff) == WANT


def test_unchanged_result_is_not_reported():
    diff = "--- a/model.py\n+++ b/model.py\n@@ -6,2 +6,2 @@\n def wave(x):\n" \
           "-    return math.sin(1.0 * x)\n+    return math.sin(1.0 * x)\n"
    assert apply_diff(diff, FILES, ALLOWED) == {}


def test_prefixes_are_optional_and_may_be_mixed_up():
    diff = make_diff("model.py", TOY, WANT)
    assert apply(diff.replace("+++ b/model.py", "+++ a/model.py")) == WANT
    assert apply(diff.replace("a/model.py", "./model.py").replace("b/model.py", "model.py")) \
        == WANT
