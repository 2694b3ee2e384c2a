"""The profile editor: a form over every profile field, checked as you type, with
live advice beside it (estimated peak VRAM against a GPU, breakdown, speed, how long
the run takes, and the change (or changes) that make it fit). Saving keeps the comments
and unknown keys of a hand-written file; leaving without an edit asks nothing.

Keys: ctrl+up/down jump between sections, F3 previews the data as the model sees it,
ctrl+e opens the file in $EDITOR."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Collapsible, Footer, Header, Input, Label, Select, Static, Switch

from studio.hardware import Inventory
from studio.data import DataError
from studio.planning.advisor import Review, changed_keys, make_it_fit, review_profile
from studio.planning.fixes import Fix
from studio.planning.decisions import DataShape
from studio.planning.duration import run_duration
from studio.planning.catalog import CatalogError, catalog_gpus, catalog_match, lookup_model
from studio.planning.estimate import EstimateError
from studio.planning.inventory import described_inventory
from studio.planning.layout import LayoutError
from studio.planning.plan import SETTLED_KEYS
from studio.profiles.library import editable_path, profile_text, save_preserving_comments
from studio.profiles.profile import (SECTIONS, Profile, ProfileError, check_value, load_profile, parse_toml,
                                     profile_from_dict, value_of)
from studio.runs.start import row_lengths, shape_of
from studio.ui.screens import StudioScreen
from studio.ui.widgets import meter

ADVICE_DELAY_S = 0.2
# Fields most runs leave alone: folded under "more" in their section, and built only when it is opened
# (the editor opens faster), unless the profile already sets one of them.
ADVANCED = {"model": ("revision", "attn_implementation", "trust_remote_code", "random_init", "tokenizer"),
            "method": ("dropout", "use_dora", "quant_type", "double_quant"),
            "data": ("split", "eval_split", "completion_only_loss", "on_bad_rows"),
            "train": ("scheduler", "warmup_ratio", "weight_decay", "max_grad_norm", "seed", "logging_steps",
                      "eval_steps", "save_steps", "save_total_limit"),
            "preference": ("loss_type", "reference", "desirable_weight", "undesirable_weight"),
            "reward": ("max_completion_length", "temperature", "beta", "format_pattern", "length_limit"),
            "hardware": ("offload_optimizer", "offload_params", "num_machines", "machine_rank", "main_address",
                         "main_port"),
            # only for `studio run --slurm`: the whole section folded, its 13 fields built when needed
            "slurm": tuple(f.name for f in fields(SECTIONS["slurm"]))}


def field_id(section: str, key: str) -> str:
    return f"f-{section}-{key}"


def parse_text(text: str, ftype: str) -> Any:
    """A text field's value as the profile's type; text that is not one stays text (the check says so)."""
    text = text.strip()
    if ftype in ("int", "float"):
        try:
            return int(text) if ftype == "int" else float(text)
        except ValueError:
            return text
    if ftype == "list[str]":
        return [t.strip() for t in text.split(",") if t.strip()]
    return text


def input_text(value: Any) -> str:
    """A profile value as its text field shows it: lists comma-separated, floats in short form."""
    if isinstance(value, list):
        return ", ".join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def advice_inventory(gpu_name: str, machine: Inventory, profile: Profile) -> Inventory:
    """This machine's GPUs when the picked card is one of them; else as many of the picked card as the profile asks."""
    if any(g.name == gpu_name for g in machine.gpus):
        return machine
    return described_inventory(f"{profile.hardware.gpu_count}x {gpu_name}", source="the editor")


def hub_data_note(name: str) -> str:
    """What the editor can say of a Hub dataset without downloading it."""
    from studio.planning.hub_models import offline

    if offline():
        return f"{name}: a Hub dataset; offline (HF_HUB_OFFLINE), so only a cached copy can be used"
    return f"{name}: a Hub dataset, read by the trainer when the run starts"


class ProfileEditor(StudioScreen):
    HELP_TITLE = "Editor"

    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("f2", "save_as", "Save as", show=False),
        Binding("f3", "preview", "Preview"),
        Binding("f4", "apply_suggestion", "Fix"),
        Binding("f5", "run", "Run"),
        Binding("f6", "pick_model", "Model"),
        Binding("ctrl+down", "section(1)", "Next section", show=False),
        Binding("ctrl+up", "section(-1)", "Previous section", show=False),
        Binding("ctrl+e", "external_editor", "$EDITOR", show=False),
        Binding("ctrl+f", "find_field", "Go to field", show=False),
        Binding("ctrl+z", "undo", "Undo", show=False, tooltip="undo the last change to a field (again: the one before)"),
        Binding("ctrl+y", "redo", "Redo", show=False, tooltip="redo the change ctrl+z undid"),
        Binding("f7", "diff", "Diff", show=False, tooltip="what saving would change in the file on disk, as a diff"),
        Binding("escape", "back", "Back"),
        # q types into a text field; anywhere else in the editor it leaves like esc (asking when there are
        # unsaved changes), never quits the app from under an edit.
        Binding("q", "back", "Back", show=False),
    ]

    def __init__(self, path: Path | None, profile: Profile | None = None, gpu_names: list[str] | None = None,
                 new_path: Path | None = None):
        super().__init__()
        self.path = path
        self.new_path = new_path   # where a new profile goes on the first save (its name was asked already)
        self.profile = profile or (load_profile(path) if path else Profile())
        self.problems: dict[str, str] = {}
        self.general_problems: list[str] = []
        self.base_title = ""
        self.dirty = new_path is not None and path is None
        self.initial: dict[str, Any] | None = None
        self.suggestion: Fix | None = None  # what F4 applies
        self.gpu_names = gpu_names or []
        self._advice_timer: Any = None
        self._lengths: dict[tuple, list[int] | str | None] = {}  # rows' token counts (or why none) per data file
        self._shapes: dict[tuple, DataShape | str | None] = {}   # data shape (or why none) per data settings
        self._models: dict[tuple, str | None] = {}   # per model: None once found, else why not ("" while looking)
        self.built: set[str] = set()   # sections whose folded fields are built
        self.open_folds: list[str] = []  # folds open because the profile sets one of their fields
        self.undo_stack: list[tuple[str, Any]] = []   # (field id, its value before a change), latest last
        self.redo_stack: list[tuple[str, Any]] = []   # (field id, the value an undo took away), latest last
        self._values: dict[str, Any] = {}  # each field's last value seen, to know what a change replaced
        self._widgets: dict[str, Any] = {}  # field id -> its widget, once looked up (a query walks the form)
        self._problem_lines: dict[str, Static] = {}  # field id -> the problem line mounted under it

    # ----------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="editor"):
            with VerticalScroll(id="form"):
                yield Label("description", classes="field-label")
                yield Input(self.profile.description, id="f-top-description", compact=True)
                for section, cls in SECTIONS.items():
                    yield Label(section.capitalize(), classes="section", id=f"s-{section}")
                    current = getattr(self.profile, section)
                    for f in fields(cls):
                        if f.name not in ADVANCED.get(section, ()):
                            yield from self._field(section, f, getattr(current, f.name))
                    if section in ADVANCED:
                        names = ADVANCED[section]
                        build = any(getattr(current, n) != getattr(getattr(Profile(), section), n) for n in names)
                        with Collapsible(title=f"more: {', '.join(names)}", collapsed=not build,
                                         id=f"more-{section}"):
                            yield Vertical(id=f"more-body-{section}")
                        if build:  # open, as the profile sets one: its fields follow the first frame
                            self.open_folds.append(section)
                yield Static(id="general-problems", classes="problem")
            with VerticalScroll(id="advice"):
                yield Label("Advice", classes="section")
                yield Select(self._gpu_options(), id="advice-gpu", allow_blank=False, value=self._gpu_options()[0][1],
                             compact=True)
                yield Static(id="advice-note", classes="hint")
                yield Static(id="advice-body")
        yield Footer()

    def _field(self, section: str, f: Any, value: Any) -> ComposeResult:
        meta = dict(f.metadata)
        yield Label(Text.assemble(f"{f.name}  ", (meta.get("help", ""), "dim")), classes="field-label")
        fid = field_id(section, f.name)
        if meta.get("switch"):
            yield Select([("auto", "auto"), ("on", True), ("off", False)], value=value, id=fid, allow_blank=False,
                         compact=True)
        elif str(f.type) == "bool":
            yield Switch(value=bool(value), id=fid)
        elif "choices" in meta:
            yield Select([(c, c) for c in meta["choices"]], value=value, id=fid, allow_blank=False, compact=True)
        else:
            yield Input(input_text(value), id=fid, compact=True)

    def advanced_fields(self, section: str) -> Iterator[Any]:
        current = getattr(self.profile, section)
        for f in fields(SECTIONS[section]):
            if f.name in ADVANCED[section]:
                yield from self._field(section, f, getattr(current, f.name))

    async def build_advanced(self, section: str) -> None:
        """A section's folded fields, mounted the first time they are needed (opened, jumped to, or set)."""
        if section not in self.built:
            self.built.add(section)
            await self.query_one(f"#more-body-{section}", Vertical).mount_all(list(self.advanced_fields(section)))

    @on(Collapsible.Expanded)
    async def more_opened(self, event: Collapsible.Expanded) -> None:
        section = (event.collapsible.id or "").removeprefix("more-")
        if section in ADVANCED:
            await self.build_advanced(section)

    def _gpu_options(self) -> list[tuple[str, str]]:
        """This machine's GPUs first; without one, a common 24 GB card, then the catalog."""
        preferred = self.gpu_names or ["RTX 4090"]
        names = list(dict.fromkeys(preferred + [g.name for g in catalog_gpus()]))
        return [(n, n) for n in names]

    def commands(self) -> Iterator[SystemCommand]:
        yield SystemCommand("Save profile", "Save (ctrl+s)", self.action_save)
        yield SystemCommand("Save profile as", "Save a copy under a new name", self.action_save_as)
        yield SystemCommand("Apply suggestion", "Apply the change that makes it fit", self.action_apply_suggestion)
        yield SystemCommand("Run profile", "Save and start a run", self.action_run)
        yield SystemCommand("Back", "Back to the dashboard (asks first if there are unsaved changes)", self.action_back)

    @property
    def dirty(self) -> bool:
        """The form differs from what is saved: the title ends with `*` while it does."""
        return self._dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self._dirty = value
        if self.base_title:
            self.title = self.base_title + (" *" if value else "")

    def on_mount(self) -> None:
        target = self.path or self.new_path
        self.base_title = f"profile {target.stem if target else '(new)'}" + (" (new)" if self.path is None else "")
        self.dirty = self.dirty
        self.initial = self.form_dict()  # an unbuilt fold's fields read as the profile's values
        self.refresh_advice()
        self.call_after_refresh(self.build_open_folds)

    settled = False  # every field mounted: until then, closing the screen would cut a Select's mount short

    async def build_open_folds(self) -> None:
        """The fields of the folds a profile opens (it sets one of theirs), mounted once the form has been drawn:
        they lie below the first screenful, and built with it they made the editor open a quarter slower."""
        for section in self.open_folds:
            await self.build_advanced(section)
        self.call_after_refresh(setattr, self, "settled", True)

    # ----------------------------------------------------------- reading the form

    def _raw_value(self, section: str, key: str, ftype: str) -> Any:
        if key in ADVANCED.get(section, ()) and section not in self.built:
            # folded and never built, so never edited: the value the form opened with, as its field would read it
            value = getattr(getattr(self.profile, section), key)
            return value if isinstance(value, bool) or ftype not in ("int", "float", "list[str]", "str") \
                else parse_text(input_text(value), ftype)
        widget = self.field_widget(field_id(section, key))
        if isinstance(widget, (Switch, Select)):
            return widget.value
        return parse_text(widget.value, ftype)

    def form_dict(self) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        description = self.field_widget("f-top-description").value
        if description:
            raw["description"] = description
        for section, cls in SECTIONS.items():
            raw[section] = {f.name: self._raw_value(section, f.name, str(f.type)) for f in fields(cls)}
        return raw

    def check_field(self, section: str, key: str) -> None:
        f = next(f for f in fields(SECTIONS[section]) if f.name == key)
        value = self._raw_value(section, key, str(f.type))
        _, problem = check_value(f"{section}.{key}", value, str(f.type), dict(f.metadata))
        self.show_field_problem(section, key, str(problem or ""))
        if problem:
            self.problems[f"{section}.{key}"] = str(problem)
        else:
            self.problems.pop(f"{section}.{key}", None)

    def field_widget(self, wid: str) -> Any:
        """The field's widget (Input, Select or Switch), looked up once: form_dict reads every field on every
        change, and a query walks the whole form."""
        widget = self._widgets.get(wid)
        if widget is None:
            widget = self._widgets[wid] = self.query_one(f"#{wid}")
        return widget

    def show_field_problem(self, section: str, key: str, problem: str) -> None:
        """The problem under its field; its line is mounted there the first time the field has one (a line
        for each of some thirty fields, hidden, made the editor open a fifth slower)."""
        wid = field_id(section, key)
        label = self._problem_lines.get(wid)
        if label is not None:
            label.update(problem)
            label.display = bool(problem)
        elif problem:
            field = self.field_widget(wid)
            label = self._problem_lines[wid] = Static(problem, id=f"e-{section}-{key}", classes="problem")
            field.parent.mount(label, after=field)

    def current_profile(self) -> Profile | None:
        try:
            profile = profile_from_dict(self.form_dict(), "form")
        except ProfileError as e:
            self.general_problems = [str(p) for p in e.found if p.key not in self.problems]
            self.query_one("#general-problems", Static).update("\n".join(self.general_problems))
            return None
        self.general_problems = []
        self.query_one("#general-problems", Static).update("")
        return profile

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    def field_changed(self, event: Any) -> None:
        wid = event.control.id or ""
        if wid == "advice-gpu":
            self.refresh_advice()
            return
        if wid.startswith("f-") and wid != "f-top-description":
            _, section, key = wid.split("-", 2)
            self.check_field(section, key)
        self.remember(wid, event.value)
        if self.initial is not None:  # the first Changed events only report the values the form opened with
            self.dirty = (self.path is None and self.new_path is not None) or self.form_dict() != self.initial
        if self._advice_timer is not None:
            self._advice_timer.stop()
        self._advice_timer = self.set_timer(ADVICE_DELAY_S, self.refresh_advice)

    def remember(self, wid: str, value: Any) -> None:
        """One undo step per run of changes to one field (typing a word is one step, not one per key)."""
        before = self._values.get(wid, value)
        self._values[wid] = value
        if not self.settled or before == value:
            return
        self.redo_stack.clear()
        if not self.undo_stack or self.undo_stack[-1][0] != wid:
            self.undo_stack.append((wid, before))

    def action_undo(self) -> None:
        self._restore(self.undo_stack, self.redo_stack, "nothing to undo")

    def action_redo(self) -> None:
        self._restore(self.redo_stack, self.undo_stack, "nothing to redo")

    def _restore(self, source: list[tuple[str, Any]], other: list[tuple[str, Any]], empty: str) -> None:
        """Put the latest value of `source` back in its field, keeping the one it replaces in `other`."""
        if not source:
            self.notify(empty)
            return
        wid, value = source.pop()
        widget = self.field_widget(wid)
        other.append((wid, widget.value))
        self._values[wid] = value  # known before its Changed event arrives: restoring is not a change to undo
        widget.value = value
        widget.focus()

    def action_find_field(self) -> None:
        from studio.ui.dialogs import FieldFinder

        names = ["top.description"] + [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)]
        self.app.push_screen(FieldFinder(names), self.go_to_field)

    async def go_to_field(self, dotted: str | None) -> None:
        if not dotted:
            return
        section, key = dotted.split(".")
        if key in ADVANCED.get(section, ()):
            await self.build_advanced(section)
            self.query_one(f"#more-{section}", Collapsible).collapsed = False
        widget = self.field_widget(field_id(section, key))
        self.call_after_refresh(widget.focus)

    def action_diff(self) -> None:
        """What ctrl+s would write, against the file it writes (your copy, for a bundled template)."""
        import difflib

        from studio.ui.dialogs import Help

        profile = self.current_profile()
        target = self._writable_path()
        if profile is None or target is None:
            self.notify("fix the fields marked in red first" if profile is None else "f2 saves it under a name first",
                        severity="warning")
            return
        try:
            old = target.read_text(encoding="utf-8")
            new = profile_text(target, profile)
        except FileNotFoundError:
            old, new = "", profile_text(target, profile)
        except (OSError, UnicodeDecodeError, ProfileError) as e:
            self.notify(f"cannot compare with {target}: {e}", severity="error")
            return
        diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(),
                                         str(target) + ("" if old else " (a new file)"), "after ctrl+s", lineterm=""))
        body = Text()
        for line in diff or ["no difference: the file on disk already says this"]:
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
            body.append(line + "\n", style="bold " + style if line.startswith(("+++", "---")) else style)
        self.app.push_screen(Help(body))

    # ----------------------------------------------------------- advice

    @staticmethod
    def data_keys(profile: Profile) -> tuple[tuple, tuple]:
        """(what reading the file depends on, that plus what the shape depends on)."""
        d, t = profile.data, profile.train
        try:
            stamp = Path(d.path).expanduser().stat().st_mtime_ns
        except OSError:
            stamp = None
        file_key = (d.path, stamp, d.format, d.on_bad_rows, d.eval_fraction)
        return file_key, (*file_key, d.max_length, t.batch_size, t.seed)

    @work(thread=True, group="data-shape")
    def read_data_shape(self, profile: Profile, file_key: tuple, key: tuple) -> None:
        """The rows' shape; the file is read (seconds for a big one: off the UI thread) only when the data
        settings changed, not for a new batch size or max_length."""
        lengths: list[int] | str | None = self._lengths.get(file_key)
        if file_key not in self._lengths:
            try:
                lengths = row_lengths(profile)
            except (DataError, ProfileError, OSError) as e:
                lengths = "; ".join(e.problems[:2]) if isinstance(e, ProfileError) else str(e)
            if lengths is None:  # a Hub dataset: its rows are not read here
                lengths = hub_data_note(profile.data.path)
        shape = shape_of(profile, lengths) if isinstance(lengths, list) else lengths
        self.app.call_from_thread(self.data_shape_read, file_key, lengths, key, shape)

    def data_shape_read(self, file_key: tuple, lengths: list[int] | str | None, key: tuple,
                        shape: DataShape | str | None) -> None:
        self._lengths[file_key] = lengths
        self._shapes[key] = shape
        self.refresh_advice()

    def data_shape(self, profile: Profile) -> DataShape | str | None:
        """The data's shape when known; starts reading it (and answers None) when not."""
        file_key, key = self.data_keys(profile)
        if key not in self._shapes:
            self._shapes[key] = None
            self.read_data_shape(profile, file_key, key)
        return self._shapes[key]

    def model_found(self, profile: Profile) -> str | None:
        """None when the model is known (the catalog's answer is instant; a Hub id or a folder is looked up
        once in a worker, which can take seconds); else "" while looking, or why it cannot be found."""
        m = profile.model
        key = (m.name, m.revision, m.trust_remote_code)
        if key not in self._models:
            if catalog_match(m.name) is not None:
                self._models[key] = None
            else:
                self._models[key] = ""
                self.look_up_model(key)
        return self._models[key]

    @work(thread=True, group="model-lookup")
    def look_up_model(self, key: tuple) -> None:
        name, revision, trust = key
        try:
            lookup_model(name, trust_remote_code=trust, revision=revision)  # fetched and read once, then cached
            found = None
        except CatalogError as e:
            found = f"no estimate: {e}"
        self.app.call_from_thread(self.model_looked_up, key, found)

    def model_looked_up(self, key: tuple, found: str | None) -> None:
        self._models[key] = found
        self.refresh_advice()

    def action_pick_model(self) -> None:
        from studio.ui.model_picker import ModelPicker

        field = self.field_widget(field_id("model", "name"))

        def picked(name: str | None) -> None:
            if name:
                field.value = name  # the form's change starts the lookup and the new estimate

        self.app.push_screen(ModelPicker(field.value if not field.value.startswith("builtin:") else ""), picked)

    def advice_note(self, gpu_name: str) -> str:
        inv = self.app.inventory
        if inv.gpus:
            return "" if any(g.name == gpu_name for g in inv.gpus) else f"not this machine's GPU: planning for {gpu_name}"
        why = f" ({inv.reason})" if inv.reason else ""
        return f"no GPU here: planning for {gpu_name}; pick the card you will train on{why}"

    def refresh_advice(self) -> None:
        try:
            body = self.query_one("#advice-body", Static)
        except NoMatches:  # the editor is closing (the app quits): a worker's late answer has no pane to go to
            return
        profile = self.current_profile()
        self.suggestion = None
        gpu_name = str(self.query_one("#advice-gpu", Select).value)
        self.query_one("#advice-note", Static).update(self.advice_note(gpu_name))
        if profile is None:
            body.update(Text("fix the fields marked in red for an estimate", style="yellow"))
            return
        looked_up = self.model_found(profile)
        if looked_up is not None:
            body.update(Text(looked_up or f"looking up {profile.model.name}: its config and its layout, read from "
                                           "its own code (once; then it is cached)...",
                             style="dim" if not looked_up else "yellow"))
            return
        shape = self.data_shape(profile)
        try:
            inventory = advice_inventory(gpu_name, self.app.inventory, profile)
            review = review_profile(profile, inventory, data=shape if isinstance(shape, DataShape) else None)
        except (CatalogError, EstimateError, LayoutError) as e:
            body.update(Text(f"no estimate: {e}", style="dim"))
            return
        plan = review.plan
        assert plan is not None and plan.memory is not None and plan.gpu is not None
        mem, gpu, per = plan.memory, plan.gpu, " per GPU" if plan.layout.processes > 1 else ""
        # The verdict and its fix first: on an 80x24 terminal the pane shows about fifteen lines.
        text = Text("fits" if review.fits else "does not fit", style="bold green" if review.fits else "bold red")
        room = f"{plan.free_gib:.1f} GiB free" if plan.free_gib is not None else f"{gpu.memory_total_gib:.0f} GiB"
        text.append(f": {review.peak_vram_gib:.1f} GiB peak{per}, {room}\n", style="bold")
        self.add_suggestion(text, review, profile, inventory, shape if isinstance(shape, DataShape) else None)
        text.append_text(meter(review.peak_vram_gib, gpu.memory_total_gib, 24))
        ckpt = plan.decision("train.gradient_checkpointing")
        if ckpt is not None:  # the peak jumps where auto checkpointing turns on or off: say which way it went
            how = "auto" if value_of(profile, "train.gradient_checkpointing") == "auto" else "set"
            text.append(f"\ncheckpointing {'on' if ckpt.value else 'off'} ({how})", style="dim")
        text.append("\n")
        if plan.layout.processes > 1:
            text.append(f"{plan.layout.processes} GPUs, {plan.layout.strategy}\n")
        for key, gib in mem.parts():
            text.append(f"  {key:13} {gib:6.2f} GiB\n")
        if plan.speed:
            text.append(f"~{plan.speed.tokens_per_s:,.0f} tokens/s on {gpu.name}\n")
        duration = run_duration(plan)
        if duration:
            text.append(f"{duration.describe()}\n", style="bold")
        if isinstance(shape, DataShape):
            text.append(f"data: {shape.describe()}\n", style="dim")
        elif isinstance(shape, str):
            text.append(f"data: {shape}\n", style="yellow")
        else:
            text.append("data: reading...\n", style="dim")
        for note in plan.notes:
            text.append(f"note: {note}\n", style="yellow")
        for d in plan.decisions:
            if d.key in SETTLED_KEYS and value_of(profile, d.key) == "auto":
                text.append(f"auto {d.key.split('.')[-1]} → {d.value}: {d.reason}\n", style="dim")
        body.update(text)

    def add_suggestion(self, text: Text, review: Review, profile: Profile, inventory: Inventory,
                       data: DataShape | None) -> None:
        """The gentlest single change that makes it fit; else several together; else say so."""
        if review.fits:
            return
        fitting = [f for f in review.fixes if f.fits]
        if fitting:
            self.suggestion = fitting[0]
            text.append(f"F4 applies: {fitting[0].reason} ({fitting[0].peak_vram_gib:.1f} GiB peak)\n",
                        style="bold cyan")
            return
        try:
            together = make_it_fit(profile, inventory, data=data)
        except (EstimateError, LayoutError):
            together = None
        if together is None:
            text.append("no change to the profile fits this card; pick a bigger GPU (or several)\n", style="yellow")
            return
        self.suggestion = together
        text.append(f"F4 applies these together ({together.peak_vram_gib or 0:.1f} GiB peak):\n", style="bold cyan")
        for step in together.reasons:
            text.append(f"  • {step}\n", style="cyan")

    async def action_apply_suggestion(self) -> None:
        profile = self.current_profile()
        if not self.suggestion or profile is None:
            self.notify("nothing to apply: the profile fits (or no change makes it fit)")
            return
        try:
            changed = self.suggestion.apply(profile)
        except ProfileError as e:  # the form changed since the advice: it no longer takes this fix
            self.notify("; ".join(e.problems[:2]), title="cannot apply the fix", severity="error")
            return
        await self.show_values(changed, list(changed_keys(profile, changed)))
        self.notify("applied:\n" + "\n".join(f"• {c}" for c in self.suggestion.reasons) + "\n(ctrl+s saves)")
        self.refresh_advice()

    async def show_values(self, profile: Profile, keys: list[str]) -> None:
        """Put the profile's values for `keys` (dotted) into their form fields (a folded one is built first)."""
        for dotted in keys:
            section, key = dotted.split(".")
            if key in ADVANCED.get(section, ()):
                await self.build_advanced(section)
                self.query_one(f"#more-{section}", Collapsible).collapsed = False
            widget = self.field_widget(field_id(section, key))
            value = value_of(profile, dotted)
            widget.value = input_text(value) if isinstance(widget, Input) else value

    # ----------------------------------------------------------- saving

    def _writable_path(self) -> Path | None:
        return self.new_path if self.path is None else editable_path(self.path)

    def _save_to(self, path: Path) -> bool:
        profile = self.current_profile()
        if profile is None or self.problems:
            shown = list(self.problems.values()) + self.general_problems
            self.notify("not saved: " + "; ".join(shown[:3]), severity="error")
            return False
        try:
            save_preserving_comments(path, profile)
            parse_toml(path.read_text(encoding="utf-8"), str(path))
        except (OSError, ProfileError) as e:
            self.notify(f"not saved: {e}", severity="error")
            return False
        if self.path and path != self.path:
            self.notify(f"saved your copy to {path} (bundled templates are read-only)")
        else:
            self.notify(f"saved {path}")
        self.path = path
        self.profile = profile
        self.initial = self.form_dict()
        self.base_title = f"profile {path.stem}"
        self.dirty = False
        self.app.profiles_changed()
        return True

    def action_save(self) -> None:
        path = self._writable_path()
        if path is None:
            self.action_save_as()
            return
        self._save_to(path)

    def action_save_as(self) -> None:
        from studio.ui.dialogs import ProfileNameDialog

        def done(dest: Path | None) -> None:
            if dest is None:
                return
            if dest.exists() and dest != self.path:
                self.notify(f"{dest} exists; pick another name", severity="error")
                return
            if self.path and dest != self.path and self.path.exists() and editable_path(self.path) == self.path:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(self.path.read_text())  # keep the source's comments in the copy (not a template's)
            self._save_to(dest)

        self.app.push_screen(ProfileNameDialog("save the profile as (name):", self.path.stem if self.path else ""), done)

    def action_run(self) -> None:
        """Save what changed (a changed template becomes your copy), then start; an unchanged template
        runs as it is, without a copy beside it."""
        if self.dirty or self.path is None:
            self.action_save()
        if self.path and not self.dirty:
            self.app.start_profile(self.path)

    def action_back(self) -> None:
        from studio.ui.dialogs import leave

        leave(self, self.dirty, "discard unsaved changes?")


    # ----------------------------------------------------------- moving about, the data, $EDITOR

    def action_section(self, step: int) -> None:
        """Focus the first field of the next (or previous) section."""
        names = list(SECTIONS)
        focused = self.focused.id if self.focused and self.focused.id else ""
        current = focused.split("-")[1] if focused.startswith("f-") and focused.split("-")[1] in names else None
        index = names.index(current) + step if current else (0 if step > 0 else len(names) - 1)
        section = names[index % len(names)]
        first = next(f.name for f in fields(SECTIONS[section]) if f.name not in ADVANCED.get(section, ()))
        self.query_one(f"#s-{section}").scroll_visible(top=True, animate=False)
        self.field_widget(field_id(section, first)).focus(scroll_visible=False)

    def action_preview(self) -> None:
        """The first rows through the model's tokenizer and template, trained tokens marked (a worker)."""
        import tempfile

        from studio.ui.dialogs import DataPreview

        profile = self.current_profile()
        if profile is None:
            self.notify("fix the fields marked in red first", severity="warning")
            return
        folder = Path(tempfile.mkdtemp(prefix="studio-preview-"))
        (folder / "profile.toml").write_text(profile.to_toml(), encoding="utf-8")
        self.app.push_screen(DataPreview(folder / "profile.toml"))

    def action_external_editor(self) -> None:
        from studio.ui.raw_editor import open_in_editor

        if not self.settled:  # pressed as the editor opened: once its fields are mounted
            self.call_after_refresh(self.action_external_editor)
            return
        if self.path is None or self.dirty:
            self.notify("save first (ctrl+s): $EDITOR opens the file on disk", severity="warning")
            return
        path = editable_path(self.path)
        if path != self.path:
            self._save_to(path)  # a bundled template: edit your copy
        error = open_in_editor(self.app, path)
        if error:
            self.notify(error, severity="error")
        self.app.pop_screen()
        self.app.edit_profile(path)  # the form again, or the text with its problems if it no longer loads
