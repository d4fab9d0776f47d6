"""Which supply can serve which need: the node rule and the product forms, one rule for delivery and matching.

* **Node.** An offer serves a need on the same node, or, for an element node (NdPr, Dy, Tb, La-Ce, Y), a need on
  its aggregate node at the same stage (:data:`AGGREGATE_OF`): a tonne of Dy oxide is a tonne of rare-earth
  oxide (REO basis), so it can fill a rare-earth oxide need, never the reverse (a tonne of mixed REO is not Dy).
  Where a participant's element demand is a buyer row of its own (Japan's NdPr), its aggregate row is the rest
  and names the elements it holds, so the element group bars NdPr from it (review 5: Lynas' NdPr filled Japan's
  lanthanum and cerium tonnage).
* **Form.** Inside a node, product families a buyer cannot swap (:data:`FORM_FAMILIES`: light vs heavy rare
  earths, oxide vs metal vs concentrate, natural vs synthetic graphite); an element node states its group
  itself (:data:`ELEMENT_GROUP`). A family only one side states does not bar the pair.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+")

#: Element nodes whose tonnes are tonnes of an aggregate node at the same stage (REO-equivalent oxide, content or
#: metal): the element can serve the aggregate's buyers (issue 12 review: buyers sat on the rare-earth aggregate
#: while the register's Dy and NdPr projects sat on element nodes, so no delivery could reach them).
AGGREGATE_OF: dict[str, str] = {"ndpr": "rare_earths", "dysprosium": "rare_earths", "terbium": "rare_earths",
                                "lanthanum_cerium": "rare_earths", "yttrium": "rare_earths"}

#: Product families inside one node that a buyer cannot swap (issue 12: a Dy/Tb oxide buyer was matched to an
#: NdPr producer, a natural-graphite buyer to a synthetic-graphite plant). Per family, the tags and the words
#: of a product description or a buyer's stated need that carry them.
FORM_FAMILIES: dict[str, dict[str, set[str]]] = {
    # a product "for (permanent) magnets" is NdPr and Dy/Tb, never lanthanum or cerium (review 7: Solvay's La
    # Rochelle magnet line filled U.S. and Japanese La/Ce rows once its place name no longer read as lanthanum);
    # samarium, europium and gadolinium are a middle group of their own, so a Dy/Tb producer does not fill a row
    # that names Sm and Gd but holds no Dy or Tb
    "rare-earth group": {"light (NdPr)": {"ndpr", "neodymium", "praseodymium", "nd", "pr", "lree", "light", "magnet", "magnets"},
                         "heavy (Dy/Tb)": {"dysprosium", "terbium", "dy", "tb", "hree", "heavy", "magnet", "magnets"},
                         "medium (Sm/Eu/Gd)": {"samarium", "europium", "gadolinium", "seg", "mree"},
                         # full names only: "la" and "ce" are also words of place and company names (La Rochelle)
                         "other (La/Ce/Y)": {"lanthanum", "cerium", "yttrium"}},
    "rare-earth form": {"oxide": {"oxide", "oxides"}, "metal": {"metal", "metals", "alloy", "alloys"},
                        "concentrate": {"concentrate", "carbonate", "feed", "feedstock", "monazite", "xenotime"}},
    "graphite type": {"natural": {"natural", "flake", "spherical", "spherodized", "spheroidised"},
                      "synthetic": {"synthetic", "artificial"}},
}

#: Nodes whose products the families above describe.
FORM_NODES = {"rare_earths": ("rare-earth group", "rare-earth form"), "ndpr": ("rare-earth form",), "dysprosium": ("rare-earth form",),
              "terbium": ("rare-earth form",), "graphite": ("graphite type",), "battery_anode": ("graphite type",),
              "synthetic_graphite": ("graphite type",)}


#: The rare-earth group an element node's output belongs to, whatever its description says.
ELEMENT_GROUP: dict[str, str] = {"ndpr": "light (NdPr)", "dysprosium": "heavy (Dy/Tb)", "terbium": "heavy (Dy/Tb)",
                                 "lanthanum_cerium": "other (La/Ce/Y)", "yttrium": "other (La/Ce/Y)"}


def form_tags(text: str, commodity: str, node_of: str | None = None) -> dict[str, set[str]]:
    """Per product family of the node ``node_of`` (default: ``commodity``'s own), the tags a text names (empty:
    the text does not say); an element node's group is implied (:data:`ELEMENT_GROUP`)."""
    words = set(_WORD.findall(text.lower()))
    tags = {fam: {tag for tag, keys in FORM_FAMILIES[fam].items() if words & keys} for fam in FORM_NODES.get(node_of or commodity, ())}
    if "rare-earth group" in tags and commodity in ELEMENT_GROUP:
        tags["rare-earth group"] = {ELEMENT_GROUP[commodity]}
    return tags


def form_conflict(offer: dict[str, set[str]], need: dict[str, set[str]]) -> str | None:
    """Why an offer cannot serve a need (a family both state, with no tag in common), or None."""
    for fam, want in need.items():
        have = offer.get(fam, set())
        if want and have and not want & have:
            return f"{fam}: the buyer needs {' or '.join(sorted(want))}, the project makes {' and '.join(sorted(have))}"
    return None



def node_serves(offer_commodity: str, offer_stage: str, need_commodity: str, need_stage: str) -> bool:
    """Whether an offer's node can fill a need's node (see module docstring)."""
    return offer_stage == need_stage and (offer_commodity == need_commodity or AGGREGATE_OF.get(offer_commodity) == need_commodity)


def serve_conflict(offer: dict[str, object], need: dict[str, object], offer_text: str, need_text: str) -> str | None:
    """Why an offer (a project row) cannot serve a need (a buyer row) on node and form, or None. Origin rules and
    contracts are checked by the caller."""
    oc, os_, nc, ns = str(offer["commodity_id"]), str(offer["stage"]), str(need["commodity_id"]), str(need["stage"])
    if not node_serves(oc, os_, nc, ns):
        return f"node {oc}/{os_} cannot fill {nc}/{ns}"
    return form_conflict(form_tags(offer_text, oc, nc), form_tags(need_text, nc))
