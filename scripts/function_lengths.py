#!/usr/bin/env python3
"""The longest functions in src/: file:line, lines (signature to closing brace) and name.

    scripts/function_lengths.py [--top N] [--limit L] [ROOT]

Reads every src/**/*.cpp under ROOT (default: the repository this script lives in), blanks comments,
string and character literals and preprocessor lines, then matches braces. Namespaces, classes,
structs, unions, enums and extern "C" blocks are containers; any other brace block at container level
whose head reads as a signature (a parenthesised parameter list, no '=' before it) is a function, so
member functions defined in a class body count one by one. Lambdas and nested blocks count as part
of the function that holds them. Prints the N longest (default 10); with --limit, exits 1 when a
function other than those listed in ALLOWED is longer than L lines. The standard library only.
"""
import argparse
import os
import re
import sys

# Functions allowed over --limit, as "file:name". Issue 29 allows a single signal pipeline, read
# best as one piece; none needs it today: the longest, train's LogMelAugmenter::apply (the fresh
# log-mel augmentation of a batch: gain, noise, filters, delay, pitch, masks, in that order) and
# mart-preprocess's run, are under 120 lines.
ALLOWED = set()

CONTAINER = re.compile(r"^(template\s*<.*>\s*)?(namespace\b|class\b|struct\b|union\b|enum\b|extern\b)", re.S)
ACCESS = re.compile(r"^\s*((public|private|protected)\s*:(?!:)\s*)+")


def blank(text):
    """`text` with comments, literals and preprocessor lines replaced by spaces (newlines kept)."""
    out = []
    i, n = 0, len(text)
    line_start = True
    while i < n:
        c = text[i]
        if line_start and c == "#":
            # A preprocessor line, with its continuations.
            while i < n and text[i] != "\n":
                if text[i] == "\\" and i + 1 < n and text[i + 1] == "\n":
                    out.append(" \n")
                    i += 2
                    continue
                out.append(" ")
                i += 1
            continue
        if c == "\n":
            out.append(c)
            line_start = True
            i += 1
            continue
        if c in " \t":
            out.append(c)
            i += 1
            continue
        line_start = False
        if text.startswith("//", i):
            while i < n and text[i] != "\n":
                out.append(" ")
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            delim_end = text.find("(", i + 2)
            delim = text[i + 2:delim_end]
            end = text.find(")" + delim + '"', delim_end)
            end = n if end < 0 else end + len(delim) + 2
            out.append('""' + re.sub(r"[^\n]", " ", text[i + 2:end]))
            i = end
        elif c in "\"'":
            if c == "'" and i > 0 and text[i - 1].isalnum():  # a digit separator (1'000)
                out.append(" ")
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (j - i - 1) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def function_name(head):
    """The name before the parameter list of a signature (the first '(' outside <...>)."""
    depth = 0
    for k, ch in enumerate(head):
        if ch == "<":
            depth += 1
        elif ch == ">" and depth > 0:
            depth -= 1
        elif ch == "(" and depth == 0:
            before = head[:k].rstrip()
            if re.search(r"operator\s*$", before):  # operator()(...)
                return before.split()[-1] + "()"
            match = re.search(r"(operator\s*\S+|[~\w:]+)$", before)
            return match.group(1) if match else before[-30:]
    return head.strip()[:30]


def is_signature(head):
    head = head.strip()
    if "(" not in head:
        return False
    before_paren = head[: head.index("(")]
    # `x = [](...) {`, `auto v = f({...})`: an initialiser, not a definition.
    if re.search(r"(?<![=!<>+\-*/%&|^])=(?!=)", before_paren) and "operator" not in before_paren:
        return False
    return True


def ctor_init_member(head):
    """Whether a '{' after `head` opens a brace-initialised member of a constructor's initialiser
    list (`Foo::Foo(int x) : a_(x), b_{x} {`) rather than the body."""
    depth, params_end = 0, -1
    for k, ch in enumerate(head):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                params_end = k
                break
    rest = head[params_end + 1:]
    if not re.match(r"^[\s\w]*:(?!:)", rest):  # no initialiser list
        return False
    return re.search(r"[\w>]\s*$", head) is not None and not re.search(r"\b(const|override|final|noexcept|try)\s*$", head)


def functions(path):
    """(lines, first line, name) of every function defined at container level in `path`."""
    text = blank(open(path, encoding="utf-8", errors="replace").read())
    found = []
    line = 1
    head, head_line = "", None
    stack = []  # "container", ("function", name, first line), "inner" (a block inside a function)
    paren = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            head += " " if head else ""
            i += 1
            continue
        if any(isinstance(s, tuple) for s in stack):  # inside a function: count its braces
            if c == "{":
                stack.append("inner")
            elif c == "}":
                top = stack.pop()
                if isinstance(top, tuple):
                    found.append((line - top[2] + 1, top[2], top[1]))
                    head, head_line = "", None
            i += 1
            continue
        # Container level: collect the head of the next declaration.
        if c == "(":
            paren += 1
        elif c == ")":
            paren -= 1
        if c == "{" and paren == 0:
            clean = ACCESS.sub("", head).strip()
            if re.match(r"^(namespace|extern)\b", clean) or (CONTAINER.match(clean) and "(" not in clean):
                stack.append("container")
                head, head_line = "", None
                i += 1
                continue
            if is_signature(clean) and not ctor_init_member(clean):
                stack.append(("function", function_name(clean), head_line or line))
                i += 1
                continue
            # An initialiser or a brace-initialised member: part of the head, skipped to its end.
            depth = 0
            while i < n:
                if text[i] == "{":
                    depth += 1
                elif text[i] == "}":
                    depth -= 1
                elif text[i] == "\n":
                    line += 1
                head += text[i] if text[i] != "\n" else " "
                i += 1
                if depth == 0:
                    break
            continue
        if c == "}" and paren == 0:
            if stack:
                stack.pop()
            head, head_line = "", None
            i += 1
            continue
        if c == ";" and paren == 0:
            head, head_line = "", None
            i += 1
            continue
        if not c.isspace() and head_line is None:
            head_line = line
        head += c
        i += 1
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--limit", type=int, default=0, help="exit 1 when a function not in ALLOWED is longer")
    args = parser.parse_args()
    rows = []
    src = os.path.join(args.root, "src")
    for folder, _, names in os.walk(src):
        for name in sorted(names):
            if name.endswith(".cpp"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, args.root)
                rows += [(length, rel, start, fn) for length, start, fn in functions(path)]
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    for length, rel, start, fn in rows[: args.top]:
        print(f"{length:5d}  {rel}:{start}  {fn}")
    if args.limit:
        over = [r for r in rows if r[0] > args.limit and f"{r[1]}:{r[3]}" not in ALLOWED]
        for length, rel, start, fn in over:
            print(f"over {args.limit} lines: {rel}:{start} {fn} ({length})", file=sys.stderr)
        return 1 if over else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
