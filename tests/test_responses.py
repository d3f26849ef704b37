"""From raw LLM answers to a diff and a rationale, against the real ExquisiteNetV2 gene file."""

from __future__ import annotations

import pytest

from gitevo.core import resources
from gitevo.variation import genome, patch
from gitevo.variation.patch import PatchError
from gitevo.variation.responses import Extracted, extract, summarize

SOURCE = (resources.templates()["exquisitenetv2"] / "model.py").read_text()
FENCE = "```"

SE_DIFF = """--- a/model.py
+++ b/model.py
@@ -41,5 +41,5 @@ class SE(nn.Module):
-    def __init__(self, cin: int = 48, ratio: int = 3):
+    def __init__(self, cin: int = 48, ratio: int = 4):
         super().__init__()
         hidden = int(cin / ratio)
         self.squeeze = nn.Linear(cin, hidden, bias=False)
         self.excite = nn.Linear(hidden, cin, bias=False)
"""

DW_BLOCK = '''class DW(nn.Module):
    """Depthwise convolution with bias, then SiLU."""

    def __init__(self, cin: int = 384, dw_s: int = 3):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, dw_s, padding=(dw_s - 1) // 2, groups=cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.dw(x))
'''


def fenced(body: str, lang: str = "diff") -> str:
    return f"{FENCE}{lang}\n{body.rstrip()}\n{FENCE}"


def run(text: str, block: str = "SE", source: str = SOURCE) -> Extracted:
    return extract(text, path="model.py", block_name=block, source=source)


def applied(got: Extracted, source: str = SOURCE) -> str:
    """The gene file after the extracted diff, through the real patch code."""
    return patch.apply_diff(got.diff, {"model.py": source}, allowed={"model.py"},
                            default_path="model.py")["model.py"]


def refused(text: str, block: str = "SE", source: str = SOURCE) -> PatchError:
    with pytest.raises(PatchError) as info:
        run(text, block, source)
    return info.value


# ------------------------------------------------------------------------------- diffs


def test_fenced_diff_with_prose_around():
    got = run(f"Raise the ratio to 4: fewer weights.\n\nHere is the diff:\n\n{fenced(SE_DIFF)}"
              "\n\nThis keeps the shapes.")
    assert got.kind == "diff"
    assert "ratio: int = 4" in applied(got)
    assert genome.changed_blocks(SOURCE, applied(got)) == {"SE"}
    # the introducing line is dropped, the reasoning on both sides kept
    assert got.rationale == "Raise the ratio to 4: fewer weights.\n\nThis keeps the shapes."
    assert got.summary == "Raise the ratio to 4: fewer weights"


def test_bare_diff_ends_before_a_markdown_list():
    text = f"Why: smaller bottleneck.\n\n{SE_DIFF}\n- fewer weights\n- same shapes\n"
    got = run(text)
    assert "ratio: int = 4" in applied(got)
    assert got.rationale == "Why: smaller bottleneck.\n\n- fewer weights\n- same shapes"


def test_diff_inside_a_python_fence_and_a_tilde_fence():
    for text in (fenced(SE_DIFF, "python"), f"~~~\n{SE_DIFF}~~~"):
        assert "ratio: int = 4" in applied(run(text))


def test_fence_indented_in_a_list_item():
    body = "\n".join("   " + line if line else "" for line in SE_DIFF.splitlines())
    text = f"1. Change the ratio:\n\n   {FENCE}diff\n{body}\n   {FENCE}\n"
    assert "ratio: int = 4" in applied(run(text))


def test_hunks_in_separate_fences_are_one_change():
    first = "@@ -44,2 +44,2 @@\n-        self.squeeze = nn.Linear(cin, hidden, bias=False)\n" \
            "+        self.squeeze = nn.Linear(cin, hidden, bias=True)\n" \
            "         self.excite = nn.Linear(hidden, cin, bias=False)\n"
    second = "@@ -49,1 +49,1 @@\n" \
             "-        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(pooled))))\n" \
             "+        gate = torch.sigmoid(self.excite(F.silu(self.squeeze(pooled))))\n"
    got = run(f"First:\n{fenced(first)}\nThen:\n{fenced(second)}")
    new = applied(got)
    assert "bias=True" in new and "F.silu(self.squeeze" in new


def test_a_lone_hunk_of_several_never_applies_half_a_change():
    good = "@@ -49,1 +49,1 @@\n" \
           "-        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(pooled))))\n" \
           "+        gate = torch.sigmoid(self.excite(F.silu(self.squeeze(pooled))))\n"
    bad = "@@ -44,1 +44,1 @@\n-        self.squeeze = nn.Linear(cin, hidden)\n" \
          "+        self.squeeze = nn.Linear(cin, hidden, bias=True)\n"
    got = run(f"{fenced(bad)}\n{fenced(good)}")
    with pytest.raises(PatchError) as info:
        applied(got)
    assert info.value.reason == "context-mismatch"


def test_a_corrected_whole_diff_replaces_the_failed_first_one():
    wrong = SE_DIFF.replace("hidden = int(cin / ratio)", "hidden = cin // ratio")
    fixed = SE_DIFF.replace("ratio: int = 4", "ratio: int = 6")
    got = run(f"{fenced(wrong)}\nOops, I misquoted a line. Corrected:\n{fenced(fixed)}")
    assert "ratio: int = 6" in applied(got)


def test_context_shared_with_another_block_lands_in_the_target_block():
    # FCT and EVE pool identically; the numbers point at EVE, the target is FCT
    text = """@@ -108,4 +108,4 @@
     def forward(self, x: torch.Tensor) -> torch.Tensor:
-        high = F.max_pool2d(x, 2, ceil_mode=True)
+        high = F.max_pool2d(x, 3, stride=2, padding=1)
         low = -F.max_pool2d(-x, 2, ceil_mode=True)
"""
    assert genome.changed_blocks(SOURCE, applied(run(text, "FCT"))) == {"FCT"}
    assert genome.changed_blocks(SOURCE, applied(run(text, "EVE"))) == {"EVE"}


def test_a_diff_for_another_file_is_passed_on_for_the_caller_to_refuse():
    text = fenced("--- a/train.py\n+++ b/train.py\n@@ -1,1 +1,1 @@\n-import sys\n+import os\n")
    got = run(text)
    with pytest.raises(PatchError) as info:
        applied(got)
    assert info.value.reason == "protected-path"


def test_new_file_diff_is_refused_with_its_reason():
    error = refused(fenced("--- /dev/null\n+++ b/extra.py\n@@ -0,0 +1 @@\n+x = 1\n"))
    assert error.reason == "new-file"


def test_crlf_answer_and_crlf_gene_file():
    crlf_source = SOURCE.replace("\n", "\r\n")
    got = run(fenced(SE_DIFF).replace("\n", "\r\n"), source=crlf_source)
    new = applied(got, crlf_source)
    assert "ratio: int = 4):\r\n" in new and "\n" not in new.replace("\r\n", "")


# -------------------------------------------------------------------------- full blocks


def test_full_block_becomes_a_diff_against_the_source():
    got = run(f"Use SiLU.\n\n{fenced(DW_BLOCK, 'python')}\n", "DW")
    assert got.kind == "block"
    assert got.diff == patch.make_diff("model.py", SOURCE,
                                       genome.replace_block(SOURCE, "DW", DW_BLOCK))
    assert got.rationale == "Use SiLU."


def test_whole_file_answer_takes_the_target_block():
    whole = genome.replace_block(SOURCE, "DW", DW_BLOCK)
    got = run(fenced(whole, "python"), "DW")
    assert applied(got) == whole


def test_whole_file_that_changes_another_block_is_outside_the_block():
    whole = genome.replace_block(SOURCE, "DW", DW_BLOCK).replace("Dropout(0.5)", "Dropout(0.1)")
    error = refused(fenced(whole, "python"), "DW")
    assert error.reason == "outside-block" and "ExquisiteNetV2" in str(error)


@pytest.mark.parametrize("extra", ["import math\n\n\n", "EPS = 1e-5\n\n\n",
                                   "def helper(x):\n    return x\n\n\n"])
def test_full_block_with_a_new_module_level_name_is_outside_the_block(extra):
    error = refused(fenced(extra + DW_BLOCK, "python"), "DW")
    assert error.reason == "outside-block"


def test_demo_code_beside_the_block_is_left_behind():
    text = fenced(DW_BLOCK + '\n\nif __name__ == "__main__":\n    print(DW()(None))\n', "python")
    assert "__main__" not in applied(run(text, "DW"))


def test_last_complete_block_wins():
    first = DW_BLOCK.replace("F.silu", "F.gelu")
    got = run(f"{fenced(first, 'python')}\nBetter:\n{fenced(DW_BLOCK, 'python')}", "DW")
    assert "F.silu(self.dw(x))" in applied(got)


def test_block_with_a_syntax_error_still_becomes_a_diff():
    broken = DW_BLOCK.replace("return F.silu(self.dw(x))", "return F.silu(self.dw(x)")
    new = applied(run(fenced(broken, "python"), "DW"))
    assert "return F.silu(self.dw(x)\n" in new  # validation, not extraction, rejects it
    with pytest.raises(SyntaxError):
        compile(new, "model.py", "exec")


def test_a_diff_that_fails_falls_back_to_a_block_given_as_well():
    wrong = SE_DIFF.replace("hidden = int(cin / ratio)", "hidden = cin // ratio")
    block = genome.get_block(SOURCE, "SE").text.replace("ratio: int = 3", "ratio: int = 8")
    got = run(f"{fenced(wrong)}\nFull class:\n{fenced(block, 'python')}")
    assert got.kind == "block" and "ratio: int = 8" in applied(got)


def test_wrong_block_elided_and_unchanged_blocks_are_refused():
    assert refused(fenced(DW_BLOCK, "python"), "SE").reason == "wrong-block"
    lazy = DW_BLOCK.replace("        super().__init__()\n", "        # ... unchanged ...\n")
    assert refused(fenced(lazy, "python"), "DW").reason == "elided"
    same = genome.get_block(SOURCE, "DW").text
    assert refused(fenced(same, "python"), "DW").reason == "no-change"


def test_snippet_that_is_not_a_whole_block_is_no_diff():
    snippet = "    def forward(self, x):\n        return F.silu(self.dw(x))\n"
    error = refused(fenced(snippet, "python"), "DW")
    assert error.reason == "no-diff" and "complete DW" in str(error)
    assert refused("I would use SiLU in DW.", "DW").reason == "no-diff"


# ---------------------------------------------------------------------------- truncated


def test_unclosed_fence_is_truncated():
    assert refused(f"Here:\n{FENCE}diff\n{SE_DIFF[:-40]}").reason == "truncated"
    assert refused(f"{FENCE}python\n{DW_BLOCK[:120]}", "DW").reason == "truncated"


def test_unclosed_think_section_is_truncated_and_closed_ones_are_ignored():
    assert refused("<think>\nLet me consider the ratio").reason == "truncated"
    draft = fenced(SE_DIFF.replace("ratio: int = 4", "ratio: int = 16"))
    got = run(f"<think>\nDraft:\n{draft}\nNo, 16 is too much.\n</think>\n"
              f"Ratio 4.\n{fenced(SE_DIFF)}")
    assert "ratio: int = 4" in applied(got) and got.rationale == "Ratio 4."


def test_bare_diff_that_stops_short_of_its_header_is_truncated():
    cut = SE_DIFF.replace("@@ -41,5 +41,5 @@", "@@ -41,9 +41,9 @@")
    assert refused(f"Change:\n\n{cut}").reason == "truncated"
    # the same over-counted hunk followed by prose is just a sloppy count
    assert "ratio: int = 4" in applied(run(f"Change:\n\n{cut}\nThat is all."))


def test_a_hunk_one_line_short_is_truncated_only_when_its_last_line_is_cut():
    sloppy = SE_DIFF.replace("@@ -41,5 +41,5 @@", "@@ -41,6 +41,6 @@")
    assert "ratio: int = 4" in applied(run(sloppy))  # a miscount, not a cut
    cut = sloppy.replace("        self.excite = nn.Linear(hidden, cin, bias=False)\n",
                         "        self.excite = nn.Linear(hidden, cin,")
    assert refused(cut).reason == "truncated"


def test_prose_cut_off_after_a_complete_diff_is_fine():
    got = run(f"Ratio 4.\n{fenced(SE_DIFF)}\nThis should help because the bottle")
    assert "ratio: int = 4" in applied(got)


# ---------------------------------------------------------------------------- summaries


@pytest.mark.parametrize(("rationale", "summary"), [
    ("Sure! Here's my proposal for SE_LN.\n\nAdd a learnable shift to SE_LN. More.",
     "Add a learnable shift to SE_LN"),
    ("## Analysis\n\n**Change:** widen the stem, i.e. 16 channels. Then more.",
     "Change: widen the stem, i.e. 16 channels"),
    ("Ratio 3 -> 2 in `SE`.", "Ratio 3 -> 2 in SE"),
    ("", ""),
])
def test_summary(rationale, summary):
    assert summarize(rationale) == summary


def test_summary_is_cut_at_a_word():
    text = "Replace the fully connected bottleneck with a one-dimensional convolution " \
           "over the channel descriptor, as ECA-Net does."
    short = summarize(text)
    assert len(short) <= 72 and short.endswith("...") and text.startswith(short[:-3])
