"""Loading rule files from disk, and `sessionpush check`'s report."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sessionpush.dsl import tree as t
from sessionpush.dsl.errors import RulesError
from sessionpush.dsl.load import load_paths, run_check

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules"
GOOD = 'rule {name} {{ when view push {{ title "a" }} }}\n'


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def check(paths: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    status = run_check(paths, out)
    return status, out.getvalue()


# -- the example --------------------------------------------------------------------


def test_the_shop_example_checks_clean() -> None:
    status, report = check([str(EXAMPLES / "shop.rules")])
    assert (status, report) == (0, "1 file, 3 rules, 0 errors\n")


def test_cart_recovery_means_what_the_example_says() -> None:
    [rule_file] = load_paths([str(EXAMPLES / "shop.rules")])
    rules = {rule.name: rule for rule in rule_file.rules}
    rule = rules["cart_recovery"]
    assert rule.trigger == t.SessionEndTrigger(
        t.And(t.SessionHas("cart"), t.Not(t.SessionHas("purchase")))
    )
    assert rule.wait == t.Wait(600.0)
    assert rule.unless == (t.Unless("purchase"),)
    assert rule.limits == (t.Limit(1, "user", 86400.0),)
    assert isinstance(rule.action, t.PushAction)
    assert rule.action.link == t.Template(("shop://cart",))
    assert rule.action.ttl == 21600.0
    filters = [
        f.name
        for part in rule.action.title.parts
        if isinstance(part, t.Placeholder)
        for f in part.filters
    ]
    assert filters == ["default"]


def test_the_other_example_rules_use_the_replay_event_names() -> None:
    [rule_file] = load_paths([str(EXAMPLES / "shop.rules")])
    rules = {rule.name: rule for rule in rule_file.rules}
    pricey = rules["pricey_view_no_cart"]
    assert pricey.trigger == t.AbsenceTrigger(
        t.EventTrigger(
            "view", t.Compare(">", t.Path("event", ("price",)), t.Literal(500))
        ),
        "cart",
        None,
        120.0,
    )
    assert pricey.limits == (t.Limit(1, "session"),)
    assert isinstance(pricey.action, t.InappAction)

    thanks = rules["big_purchase_thanks"]
    assert thanks.trigger == t.EventTrigger(
        "purchase", t.Compare(">=", t.Path("event", ("price",)), t.Literal(300))
    )
    assert thanks.limits == (t.Limit(1, "user", 86400.0),)
    assert isinstance(thanks.action, t.PushAction)


# -- loading ------------------------------------------------------------------------


def test_a_directory_is_searched_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "b.rules", GOOD.format(name="b"))
    write(tmp_path / "a" / "z.rules", GOOD.format(name="z"))
    write(tmp_path / "a.rules", GOOD.format(name="a"))
    write(tmp_path / "notes.txt", "not rules")
    write(tmp_path / ".hidden" / "h.rules", "this is not even parsed")

    files = load_paths([str(tmp_path)])
    assert [Path(f.path).relative_to(tmp_path).as_posix() for f in files] == [
        "a.rules",
        "a/z.rules",
        "b.rules",
    ]
    assert [f.rules[0].name for f in files] == ["a", "z", "b"]


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    name = write(tmp_path / "a.rules", GOOD.format(name="a"))
    assert len(load_paths([name, str(tmp_path)])) == 1


def test_a_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "a.rules"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.format(name="a").encode())
    assert load_paths([str(path)])[0].rules[0].name == "a"


def test_every_error_of_every_file_is_raised_at_once(tmp_path: Path) -> None:
    a = write(tmp_path / "a.rules", "rule x { when view wait 10 }\n")
    b = write(tmp_path / "b.rules", 'rule y { when view push { title "{a|upr}" } }\n')
    with pytest.raises(RulesError) as caught:
        load_paths([a, b, str(tmp_path / "gone.rules")])
    assert [
        (Path(d.path).name, d.line, d.message) for d in caught.value.diagnostics
    ] == [
        ("gone.rules", 0, "no such file or directory"),
        ("a.rules", 1, "expected a duration like 10m or 24h, came '10'"),
        ("b.rules", 1, "unknown filter 'upr'"),
    ]


# -- the check report ---------------------------------------------------------


def test_check_reports_every_error_of_several_files_and_exits_1(
    tmp_path: Path,
) -> None:
    write(
        tmp_path / "a.rules",
        'rule dup {\n    when view\n    wait 0s\n    push { title "a" }\n}\n',
    )
    write(
        tmp_path / "b.rules",
        'rule dup { when view push { title "a" link "javascript:x" } }\n',
    )
    write(tmp_path / "c.rules", "rule c {\n    when view where a = 1\n}\n")
    status, report = check([str(tmp_path)])

    a, b, c = (str(tmp_path / name) for name in ("a.rules", "b.rules", "c.rules"))
    assert status == 1
    assert report == (
        f"{a}:3:5: wait must be longer than zero, got 0s\n"
        "    wait 0s\n"
        "    ^^^^^^^\n"
        "remove the wait to send at once, or wait a positive time like 10m\n"
        "\n"
        f"{b}:1:1: rule 'dup' is defined twice\n"
        '    rule dup { when view push { title "a" link "javascript:x" } }\n'
        "    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        f"the first is at {a}:1:1; rule names are unique across all rule "
        "files, rename one\n"
        "\n"
        f"{b}:1:44: 'javascript:' links are not allowed\n"
        '    rule dup { when view push { title "a" link "javascript:x" } }\n'
        "                                               ^^^^^^^^^^^^^^\n"
        "they run code or carry content in the receiver; a link is an https: "
        "URL, an app link like shop://cart, or a path like /cart\n"
        "\n"
        f"{c}:2:23: expected a comparison (==, !=, <, <=, >, >=), came '='\n"
        "    when view where a = 1\n"
        "                      ^\n"
        "compare with '==', not '='\n"
        "\n"
        "3 files, 2 rules, 4 errors\n"
    )


def test_a_missing_path_is_an_error_that_says_so(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.rules")
    assert check([missing]) == (
        1,
        f"{missing}: no such file or directory\n"
        "check the path and its spelling\n"
        "\n"
        "0 files, 0 rules, 1 error\n",
    )


def test_a_directory_without_rule_files_is_an_error(tmp_path: Path) -> None:
    status, report = check([str(tmp_path)])
    assert status == 1
    assert report.startswith(f"{tmp_path}: no .rules files in this directory\n")


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.rules"
    path.write_bytes(b"rule \xff")
    status, report = check([str(path)])
    assert status == 1
    assert report == (
        f"{path}: this file is not UTF-8 text (byte 5 cannot be read)\n"
        "save it as UTF-8\n"
        "\n"
        "1 file, 0 rules, 1 error\n"
    )


def test_a_clean_set_exits_0_with_the_counts(tmp_path: Path) -> None:
    write(tmp_path / "a.rules", GOOD.format(name="a") + GOOD.format(name="b"))
    write(tmp_path / "b.rules", GOOD.format(name="c"))
    assert check([str(tmp_path)]) == (0, "2 files, 3 rules, 0 errors\n")
