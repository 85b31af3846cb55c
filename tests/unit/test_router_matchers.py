"""Alertmanager label matchers: parsing, matching and the canonical form."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector.router.matchers import (
    Matcher,
    MatcherError,
    make_matcher,
    parse_matcher,
    parse_matchers,
)
from detector.router.model import LABEL_NAMES

FRAUD = {"model": "fraud", "severity": "critical", "feature": "amount"}


class TestParseMatcher:
    @pytest.mark.parametrize(
        ("text", "name", "op", "value"),
        [
            ('model="fraud"', "model", "=", "fraud"),
            ("model=fraud", "model", "=", "fraud"),
            ("  model  !=  fraud  ", "model", "!=", "fraud"),
            ('severity=~"crit.*"', "severity", "=~", "crit.*"),
            ("severity!~warn", "severity", "!~", "warn"),
            ('feature="a \\"b\\" \\\\ c"', "feature", "=", 'a "b" \\ c'),
            ('feature=~"amount\\d+"', "feature", "=~", "amount\\d+"),
            ('detector="a,b {c}"', "detector", "=", "a,b {c}"),
            ("severity=", "severity", "=", ""),
            ('severity=""', "severity", "=", ""),
        ],
    )
    def test_valid(self, text: str, name: str, op: str, value: str) -> None:
        """name op value, quoted (with escapes) or unquoted, whitespace around tolerated."""
        matcher = parse_matcher(text)
        assert (matcher.name, matcher.op, matcher.value) == (name, op, value)

    @pytest.mark.parametrize("name", LABEL_NAMES)
    def test_every_label_name(self, name: str) -> None:
        """Every alert label can be matched on."""
        assert parse_matcher(f'{name}="x"').name == name

    def test_unknown_label_names_the_allowed_ones(self) -> None:
        """Any other label is an error listing the allowed names."""
        with pytest.raises(MatcherError) as info:
            parse_matcher('team="ml"')
        message = str(info.value)
        assert message.startswith("expected a label name")
        assert "'team'" in message
        assert all(name in message for name in LABEL_NAMES)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", "expected a matcher such as"),
            ("   ", "expected a matcher such as"),
            ("model", "expected a matcher such as"),
            ('"model"="x"', "expected a matcher such as"),
            ("model~=x", "expected a matcher such as"),
            ('model="fraud', "expected a closing double quote"),
            ("model=fraud detection", "expected the value in double quotes"),
            ("model==fraud", "expected the value in double quotes"),
            ('model=fr"aud', "expected the value in double quotes"),
            ('model="a" x', "expected a single matcher"),
            ("model=a,severity=b", "expected a single matcher"),
            ('model=~"("', "expected a valid regular expression"),
            ('model=~"a)|(b"', "expected a valid regular expression"),
        ],
    )
    def test_invalid(self, text: str, expected: str) -> None:
        """Malformed matchers fail with a one-line message saying what was expected."""
        with pytest.raises(MatcherError) as info:
            parse_matcher(text)
        assert str(info.value).startswith(expected)
        assert "\n" not in str(info.value)

    def test_error_is_a_value_error(self) -> None:
        """MatcherError is a ValueError."""
        assert issubclass(MatcherError, ValueError)


class TestMatches:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('model="fraud"', True),
            ('model="fraud-v2"', False),
            ('model!="fraud"', False),
            ('model!="ads"', True),
            ('model=~"fr.*"', True),
            ('model=~"fr"', False),  # anchored: no partial match
            ('model=~"raud"', False),
            ('model=~"fraud|ads"', True),
            ('model!~"fraud|ads"', False),
            ('model!~"ads.*"', True),
            ('feature=~"amount\\d*"', True),
        ],
    )
    def test_operators(self, text: str, expected: bool) -> None:
        """= and != compare exactly; =~ and !~ use fully anchored regexes."""
        assert parse_matcher(text).matches(FRAUD) is expected

    def test_anchoring_survives_a_trailing_newline(self) -> None:
        """A regex must match the whole value, not the value minus a trailing newline."""
        assert not parse_matcher('model=~"fraud"').matches({"model": "fraud\n"})

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('drift_type=""', True),
            ("drift_type=", True),
            ('drift_type!=""', False),
            ('drift_type=~".*"', True),
            ('drift_type=~".+"', False),
            ('drift_type!="mean"', True),
        ],
    )
    def test_absent_label_is_empty(self, text: str, expected: bool) -> None:
        """A label the alert lacks matches as the empty string."""
        assert parse_matcher(text).matches(FRAUD) is expected

    def test_regex_compiled_at_parse_time(self) -> None:
        """The anchored regex is compiled once, when parsed."""
        matcher = parse_matcher('model=~"fr.*"')
        assert isinstance(matcher.regex, re.Pattern)
        assert matcher.regex.pattern == "^(?:fr.*)$"
        assert parse_matcher('model="x"').regex is None


class TestCanonicalForm:
    @pytest.mark.parametrize(
        ("text", "canonical"),
        [
            ("model=fraud", 'model="fraud"'),
            (" severity =~ crit.* ", 'severity=~"crit.*"'),
            ('feature="a\\"b\\\\c"', 'feature="a\\"b\\\\c"'),
            ('feature=~"amount\\d+"', 'feature=~"amount\\\\d+"'),
            ('model!~""', 'model!~""'),
        ],
    )
    def test_str(self, text: str, canonical: str) -> None:
        """str() quotes the value and escapes backslashes and quotes."""
        assert str(parse_matcher(text)) == canonical

    @given(
        st.sampled_from(LABEL_NAMES),
        st.sampled_from(["=", "!=", "=~", "!~"]),
        st.text(),
    )
    def test_round_trip(self, name: str, op: str, text: str) -> None:
        """Any matcher parses back from its canonical form to an equal matcher."""
        value = re.escape(text) if op in ("=~", "!~") else text
        matcher = make_matcher(name, op, value)
        again = parse_matcher(str(matcher))
        assert again == matcher
        labels = {name: text}
        assert again.matches(labels) == matcher.matches(labels) == (op in ("=", "=~"))

    def test_equality_ignores_the_compiled_regex(self) -> None:
        """Matchers compare by name, operator and value."""
        assert parse_matcher('model=~"a.*"') == Matcher("model", "=~", "a.*")


class TestParseMatchers:
    @pytest.mark.parametrize(
        "text",
        [
            '{model="fraud", severity=~"crit.*"}',
            'model="fraud",severity=~"crit.*"',
            " { model = fraud , severity =~ crit.* , } ",
        ],
    )
    def test_lists(self, text: str) -> None:
        """A brace list or a comma list, a trailing comma allowed."""
        assert [str(m) for m in parse_matchers(text)] == ['model="fraud"', 'severity=~"crit.*"']

    @pytest.mark.parametrize("text", ["{}", "", "  { }  "])
    def test_empty(self, text: str) -> None:
        """An empty list is no matchers."""
        assert parse_matchers(text) == []

    def test_quoted_commas_and_braces(self) -> None:
        """Commas and braces inside quotes belong to the value."""
        matchers = parse_matchers('{feature="a,b", detector="{x}"}')
        assert [m.value for m in matchers] == ["a,b", "{x}"]

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('{model="a"', "expected a closing brace"),
            ('model="a"}', "expected an opening brace"),
            ('model="a" severity="b"', "expected a comma between matchers"),
            ('model="a",,severity="b"', "expected a matcher such as"),
            ('{team="x"}', "expected a label name"),
        ],
    )
    def test_invalid(self, text: str, expected: str) -> None:
        """Unbalanced braces, missing commas and bad matchers are errors."""
        with pytest.raises(MatcherError, match=f"^{re.escape(expected)}"):
            parse_matchers(text)
