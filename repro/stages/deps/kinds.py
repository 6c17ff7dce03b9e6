"""Every kind of dependency, in the order their keys appear in a stage file.

A new kind is one module beside file.py (a Dependency class and a Kind object, as in
deps/base.py) and one entry here.
"""

from __future__ import annotations

from repro.stages.deps.base import Kind
from repro.stages.deps.file import Files
from repro.stages.deps.imported import Imports
from repro.stages.deps.params import Params

KINDS: tuple[Kind, ...] = (Files(), Params(), Imports())
