"""An import-linter contract type of our own: no import circle among the modules of the given packages."""

from __future__ import annotations

import grimp
from importlinter import Contract, ContractCheck, fields, output


class AcyclicModulesContract(Contract):
    """No module of ``packages`` reaches itself through imports (every import counts, those in functions too)."""

    type_name = "acyclic_modules"
    packages = fields.ListField(subfield=fields.ModuleField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:  # noqa: ARG002 - the API's
        """Each circle once, as the chain of modules that closes it."""
        names = {p.name for p in self.packages}  # type: ignore[attr-defined]
        inside = {m for m in graph.modules if m.split(".")[0] in names}
        for module in graph.modules - inside:
            graph.remove_module(module)  # the contract's own copy: circles through other packages do not count
        circles: dict[frozenset[str], tuple[str, ...]] = {}
        for importer in sorted(inside):
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                back = graph.find_shortest_chain(importer=imported, imported=importer)
                if back is not None:
                    circles.setdefault(frozenset(back), (importer, *back))
        return ContractCheck(kept=not circles, metadata={"circles": sorted(circles.values())})

    def render_broken_contract(self, check: ContractCheck) -> None:
        """One line per circle: a -> b -> … -> a."""
        for circle in check.metadata["circles"]:
            output.print_error(" -> ".join(circle), bold=False)
            output.new_line()
