"""The course's autograder: release, intake, sandboxed runs, the judge's hidden checks, grades and reports."""
