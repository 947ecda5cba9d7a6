#!/usr/bin/env python3
"""Doxygen input filter for mproc's public headers (Doxyfile INPUT_FILTER).

The headers document every declaration with plain C comments, written for
people reading the header. This filter makes Doxygen read them as
documentation without changing the headers, and keeps every line where it
is (warnings and source links point at the real lines):
  - the comment that opens the file becomes the file's page text (@file);
  - a comment directly followed by code (no blank line) documents it; a
    "---- Title ----" heading in it becomes a paragraph title;
  - when one comment is followed by several declarations (a function and its
    twin, put_nowait and get_nowait), each of the others copies the first
    one's documentation (@copydoc);
  - a comment after code on the same line documents that member (/**<).
Other comments (headings followed by a blank line) stay plain comments.
"""
import re
import sys

HEADING = re.compile(r"-{4,}")


def split_code(line):
    """The line's code before a comment opener, and the opener's column."""
    col = line.find("/*")
    return (line, -1) if col < 0 else (line[:col], col)


def comment_end(lines, start):
    """The index of the line where the comment opened at start closes."""
    for k in range(start, len(lines)):
        text = lines[k] if k != start else lines[k][lines[k].find("/*") + 2:]
        if "*/" in text:
            return k
    return len(lines) - 1


def statement_ends(lines, start):
    """Lines where the statements directly after a comment end: declarations
    up to ';' (braces counted) and #define lines (with continuations), until a
    blank line, a comment or another preprocessor line."""
    ends, depth, k, in_stmt = [], 0, start, False
    while k < len(lines):
        s = lines[k].strip()
        if not in_stmt and (not s or s.startswith("/*") or
                            (s.startswith("#") and not s.startswith("#define"))):
            break
        if not in_stmt and s.startswith("#define"):
            while lines[k].rstrip().endswith("\\") and k + 1 < len(lines):
                k += 1
            ends.append(k)
            k += 1
            continue
        code, _ = split_code(lines[k])
        depth += code.count("{") - code.count("}")
        in_stmt = True
        if depth <= 0 and code.rstrip().endswith(";"):
            ends.append(k)
            in_stmt = False
        elif depth < 0:
            break
        k += 1
    return ends


def declared_name(lines, start, end):
    """The name a statement declares: a macro's, a function's, a typedef's."""
    code = " ".join(split_code(l)[0] for l in lines[start:end + 1])
    if code.lstrip().startswith("typedef"):
        m = (re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", code) or
             re.search(r"(\w+)\s*;", code))
    else:
        m = (re.match(r"\s*#define\s+(\w+)", code) or
             re.search(r"(\w+)\s*\(", code) or re.search(r"(\w+)\s*;", code))
    return m.group(1) if m else None


def doc_comment(lines, start, end):
    """Turns the plain comment on lines start..end into a doc comment."""
    first = lines[start]
    col = first.find("/*")
    lines[start] = first[:col] + "/**" + first[col + 2:]
    for k in range(start, end + 1):
        m = HEADING.search(lines[k])
        if not m:
            continue
        title = HEADING.sub("", lines[k])
        if k == start:
            # "/** ---- Queue ----" : the title opens a paragraph.
            body = title[title.find("/**") + 3:].strip()
            lines[k] = title[:title.find("/**") + 3] + (
                " @par " + body if body else "")
        else:
            lines[k] = title.rstrip()


def escape_tags(lines, start, end, col=0):
    """In comment lines start..end (from column col on the first), writes
    <name> (a placeholder in the prose) so that Doxygen does not read it as
    an HTML tag."""
    for k in range(start, end + 1):
        head, tail = (lines[k][:col], lines[k][col:]) if k == start else (
            "", lines[k])
        lines[k] = head + re.sub(r"<(\w+)>", r"\\<\1\\>", tail)


def filter_header(text):
    lines = text.split("\n")
    seen_code = False
    k = 0
    while k < len(lines):
        line = lines[k]
        code, col = split_code(line)
        if col < 0 or line[col:].startswith(("/**", "/*@")):
            seen_code = seen_code or bool(line.strip())
            k += 1
            continue
        if code.strip():
            # A comment after code documents that member.
            lines[k] = code + "/**<" + line[col + 2:]
            end = comment_end(lines, k)
            escape_tags(lines, k, end, col)
            k = end + 1
            continue
        end = comment_end(lines, k)
        escape_tags(lines, k, end)
        if not seen_code:
            # @file takes a name from the rest of its line: put it last.
            lines[k] = line[:col] + "/**" + line[col + 2:]
            close = lines[end].rfind("*/")
            lines[end] = lines[end][:close] + "@file " + lines[end][close:]
            seen_code = True
            k = end + 1
            continue
        ends = statement_ends(lines, end + 1)
        if ends:
            doc_comment(lines, k, end)
            first = declared_name(lines, end + 1, ends[0])
            for e in ends[1:]:
                if first:
                    lines[e] += " /**< @copydoc " + first + " */"
        k = end + 1
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        sys.stdout.write(filter_header(f.read()))
