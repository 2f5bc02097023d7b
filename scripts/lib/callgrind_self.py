#!/usr/bin/env python3
"""Self instructions by function, summed over one or more callgrind output files.

    callgrind_self.py DIVISOR TOP FILE... [--minus FILE...]

Prints the total divided by DIVISOR (for example the number of certificates) and the TOP
functions by self cost, each divided by DIVISOR, with its share of the total. With --minus, the
costs of the files after it are subtracted first: two runs that differ only in the work counted
give that work's profile alone. It reads the callgrind format itself: for the service's
profile, the self listing of `callgrind_annotate` (3.19) named `clone` alone.
"""
import collections
import re
import sys

FN = re.compile(r"c?fn=\((\d+)\)(?: (.*))?")


def self_costs(path, totals):
    names = {}
    current = None
    after_calls = False
    with open(path, errors="replace") as lines:
        for line in lines:
            if line.startswith(("fn=", "cfn=")):
                m = FN.match(line.rstrip("\n"))
                if m and m.group(2):
                    names[m.group(1)] = m.group(2)
                if line.startswith("fn=") and m:
                    current = names.get(m.group(1))
                continue
            if line.startswith("calls="):
                # The next cost line is the call's inclusive cost, not this function's own.
                after_calls = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                fields = line.split()
                if len(fields) >= 2 and not after_calls and current:
                    totals[current] += int(fields[1])
                after_calls = False


def main():
    divisor, top, paths = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    minus = []
    if "--minus" in paths:
        at = paths.index("--minus")
        paths, minus = paths[:at], paths[at + 1 :]
    totals, subtracted = collections.Counter(), collections.Counter()
    for path in paths:
        self_costs(path, totals)
    for path in minus:
        self_costs(path, subtracted)
    totals.subtract(subtracted)
    grand = sum(totals.values()) or 1
    print(f"{grand / divisor:14,.0f}  total")
    for name, cost in totals.most_common(top):
        print(f"{cost / divisor:14,.0f}  {100 * cost / grand:5.1f} %  {name[:140]}")


if __name__ == "__main__":
    main()
