"""Reader for the single-picker routing instance format of the literature.

The format (Heßler & Irnich's instance files for single-picker routing and
order batching in rectangular warehouses) is a header of ``KEY: value`` lines,
then sections::

    NUM_AISLES: 10
    NUM_CELLS: 45
    DEPOT_AISLE: 0
    DEPOT_LOCATION: bottom
    DISTANCE_AISLE_TO_AISLE: 5
    DISTANCE_CELL_TO_CELL: 1
    DISTANCE_TOP_TO_CELL: 1.5
    DISTANCE_BOTTOM_TO_CELL: 1.5
    DISTANCE_TOP_OR_BOTTOM_TO_DEPOT: 0
    ARTICLE_SECTION            (optional)
    ID 0 WEIGHT 1
    SKU_SECTION
    ID 0 AISLE 3 CELL 12 QUANTITY 5 SIDE left
    ORDER_SECTION
    NUM_ORDERS: 1
    NUM_ARTICLES_IN_ORDER: 2
    ID 0 AMOUNT 1
    ID 7 AMOUNT 2

Aisles are 0-based from the left. Cells are 0-based from the *top* (back)
cross aisle, as the published instance readers interpret them, so cell ``c``
is our cell ``NUM_CELLS - 1 - c`` counted from the front; ``bottom`` is our
front cross aisle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from picking_app.geometry import BACK, FRONT, Grid, Slot

REQUIRED = (
    "NUM_AISLES", "NUM_CELLS", "DEPOT_AISLE", "DEPOT_LOCATION", "DISTANCE_AISLE_TO_AISLE", "DISTANCE_CELL_TO_CELL",
    "DISTANCE_TOP_TO_CELL", "DISTANCE_BOTTOM_TO_CELL", "DISTANCE_TOP_OR_BOTTOM_TO_DEPOT",
)
SECTIONS = ("ARTICLE_SECTION", "SKU_SECTION", "ORDER_SECTION")


class InstanceError(ValueError):
    """The text is not a valid instance; the message names the line."""


@dataclass(frozen=True)
class StoredArticle:
    article: int
    slot: Slot
    side: str
    quantity: int


@dataclass(frozen=True)
class Instance:
    grid: Grid
    header: dict[str, str]
    storage: list[StoredArticle] = field(default_factory=list)
    orders: list[list[tuple[int, int]]] = field(default_factory=list)  # [(article, amount), ...] per order

    def slots_for(self, order: list[tuple[int, int]]) -> list[Slot]:
        """One pick per order line, at the first location storing the article."""
        where: dict[int, Slot] = {}
        for stored in self.storage:
            where.setdefault(stored.article, stored.slot)
        try:
            return [where[article] for article, _ in order]
        except KeyError as exc:
            raise InstanceError(f"Article {exc.args[0]} is ordered but not stored.") from None


def _pairs(tokens: list[str], lineno: int) -> dict[str, str]:
    if len(tokens) % 2:
        raise InstanceError(f"Line {lineno}: expected KEY value pairs.")
    return {tokens[k].upper(): tokens[k + 1] for k in range(0, len(tokens), 2)}


def _int(value: str, what: str, lineno: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise InstanceError(f"Line {lineno}: {what} must be an integer, not {value!r}.") from None


def parse_instance(text: str) -> Instance:
    header: dict[str, str] = {}
    section = ""
    raw_storage: list[tuple[int, int, int, int, str, int]] = []
    orders: list[list[tuple[int, int]]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word = line.split()[0].rstrip(":").upper()
        if word in SECTIONS:
            section = word
            continue
        if word == "EOF":
            break
        if word != "ID":
            key, value = (line.split(":", 1) if ":" in line else (word, line[len(word):]))
            key = key.strip().upper()
            if section == "ORDER_SECTION" and key == "NUM_ARTICLES_IN_ORDER":
                orders.append([])
            elif not section:
                header[key] = value.strip()
            continue
        if section == "ARTICLE_SECTION":
            continue
        fields = _pairs(line.split(), lineno)
        if section == "SKU_SECTION":
            for key in ("ID", "AISLE", "CELL"):
                if key not in fields:
                    raise InstanceError(f"Line {lineno}: SKU line without {key}.")
            raw_storage.append((_int(fields["ID"], "ID", lineno), _int(fields["AISLE"], "AISLE", lineno),
                                _int(fields["CELL"], "CELL", lineno), _int(fields.get("QUANTITY", "0"), "QUANTITY", lineno),
                                fields.get("SIDE", "left").lower(), lineno))
        elif section == "ORDER_SECTION":
            if not orders:
                orders.append([])
            orders[-1].append((_int(fields["ID"], "ID", lineno), _int(fields.get("AMOUNT", "1"), "AMOUNT", lineno)))
    missing = [key for key in REQUIRED if key not in header]
    if missing:
        raise InstanceError(f"Missing header lines: {', '.join(missing)}.")
    try:
        aisles, cells = int(header["NUM_AISLES"]), int(header["NUM_CELLS"])
        depot = header["DEPOT_LOCATION"].lower()
        if depot not in ("top", "bottom"):
            raise InstanceError("DEPOT_LOCATION must be top or bottom.")
        grid = Grid(
            aisles=aisles, cells_per_block=cells, blocks=1, pitch=float(header["DISTANCE_AISLE_TO_AISLE"]),
            cell_length=float(header["DISTANCE_CELL_TO_CELL"]), front_gap=float(header["DISTANCE_BOTTOM_TO_CELL"]),
            back_gap=float(header["DISTANCE_TOP_TO_CELL"]), depot_aisle=int(header["DEPOT_AISLE"]),
            depot_side=FRONT if depot == "bottom" else BACK, depot_offset=float(header["DISTANCE_TOP_OR_BOTTOM_TO_DEPOT"]),
        )
    except InstanceError:
        raise
    except ValueError as exc:
        raise InstanceError(f"Invalid header: {exc}") from None
    storage = []
    for article, aisle, cell, quantity, side, lineno in raw_storage:
        slot = Slot(aisle, 0, cells - 1 - cell)
        if not grid.contains(slot):
            raise InstanceError(f"Line {lineno}: aisle {aisle}, cell {cell} is outside the layout.")
        storage.append(StoredArticle(article, slot, side if side in ("left", "right") else "left", quantity))
    return Instance(grid=grid, header=header, storage=storage, orders=[o for o in orders if o])
