"""The profile editor: a form over every profile field, checked as you type, with
live advice beside it (estimated peak VRAM against a GPU, breakdown, speed, and
the change that makes it fit). Saving keeps the comments of a hand-written file."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Select, Static, Switch

from studio.advisor import Target, review_profile, setup_from_profile
from studio.catalog import CatalogError, catalog_gpus, lookup_gpu, lookup_model
from studio.estimate import BREAKDOWN, EstimateError, estimate_memory, estimate_speed
from studio.paths import bundled_profiles_dir, user_profiles_dir
from studio.profile import (SECTIONS, Profile, ProfileError, check_value, default_value, load_profile, parse_toml,
                            profile_from_dict)
from studio.ui.widgets import meter

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ADVICE_DELAY_S = 0.2


def field_id(section: str, key: str) -> str:
    return f"f-{section}-{key}"


def save_preserving_comments(path: Path, profile: Profile) -> None:
    """Write `profile` to `path`, keeping the comments and layout of the file already there."""
    import tomlkit

    from studio.atomic import write_text

    try:
        original = path.read_text(encoding="utf-8")
        doc = tomlkit.parse(original)
        old = tomllib.loads(original)
    except Exception:  # no file yet, or one that does not parse: write a fresh document
        doc, old = tomlkit.document(), {}
    base = path.parent
    new = profile.to_dict()
    if "description" in new:
        doc["description"] = new.pop("description")
    for section, values in new.items():
        table = doc.get(section)
        if table is None:
            table = tomlkit.table()
            doc[section] = table
        for key, value in values.items():
            before = old.get(section, {}).get(key) if isinstance(old.get(section), dict) else None
            if isinstance(before, str) and isinstance(value, str) and before != value and \
                    str((base / before).expanduser().resolve()) == value:
                continue  # a relative path that still points at the same file stays relative
            if key in table or value != default_value(section, key):
                table[key] = value
    write_text(path, tomlkit.dumps(doc))


class ProfileEditor(Screen):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("f2", "save_as", "Save as"),
        Binding("f4", "apply_suggestion", "Apply fix"),
        Binding("f5", "run", "Run"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, path: Path | None, profile: Profile | None = None, gpu_names: list[str] | None = None):
        super().__init__()
        self.path = path
        self.profile = profile or (load_profile(path) if path else Profile())
        self.problems: dict[str, str] = {}
        self.general_problems: list[str] = []
        self.dirty = False
        self.suggestion: dict[str, Any] | None = None
        self.gpu_names = gpu_names or []
        self._advice_timer: Any = None

    # ----------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="editor"):
            with VerticalScroll(id="form"):
                yield Label("description", classes="field-label")
                yield Input(self.profile.description, id="f-top-description", compact=True)
                for section, cls in SECTIONS.items():
                    yield Label(section.capitalize(), classes="section")
                    current = getattr(self.profile, section)
                    for f in fields(cls):
                        yield from self._field(section, f, getattr(current, f.name))
                yield Static(id="general-problems", classes="problem")
            with Vertical(id="advice"):
                yield Label("Advice", classes="section")
                yield Select(self._gpu_options(), id="advice-gpu", allow_blank=False, value=self._gpu_options()[0][1],
                             compact=True)
                yield Static(id="advice-body")
        yield Footer()

    def _field(self, section: str, f: Any, value: Any) -> ComposeResult:
        meta = dict(f.metadata)
        yield Label(f"{f.name}  [dim]{meta.get('help', '')}[/dim]", classes="field-label")
        fid = field_id(section, f.name)
        if str(f.type) == "bool":
            yield Switch(value=bool(value), id=fid)
        elif "choices" in meta:
            yield Select([(c, c) for c in meta["choices"]], value=value, id=fid, allow_blank=False, compact=True)
        elif str(f.type) == "list[str]":
            yield Input(", ".join(value), id=fid, compact=True)
        else:
            yield Input(f"{value:g}" if isinstance(value, float) else str(value), id=fid, compact=True)
        yield Static("", id=f"e-{section}-{f.name}", classes="problem field-problem")

    def _gpu_options(self) -> list[tuple[str, str]]:
        """This machine's GPUs first; without one, a common 24 GB card, then the catalog."""
        preferred = self.gpu_names or ["RTX 4090"]
        names = list(dict.fromkeys(preferred + [g.name for g in catalog_gpus()]))
        return [(n, n) for n in names]

    def on_mount(self) -> None:
        self.title = f"profile {self.path.stem if self.path else '(new)'}"
        self.refresh_advice()

    # ----------------------------------------------------------- reading the form

    def _raw_value(self, section: str, key: str, ftype: str) -> Any:
        widget = self.query_one(f"#{field_id(section, key)}")
        if isinstance(widget, Switch):
            return widget.value
        if isinstance(widget, Select):
            return widget.value
        text = widget.value.strip()
        if ftype == "int":
            try:
                return int(text)
            except ValueError:
                return text
        if ftype == "float":
            try:
                return float(text)
            except ValueError:
                return text
        if ftype == "list[str]":
            return [t.strip() for t in text.split(",") if t.strip()]
        return text

    def form_dict(self) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        description = self.query_one("#f-top-description", Input).value
        if description:
            raw["description"] = description
        for section, cls in SECTIONS.items():
            raw[section] = {f.name: self._raw_value(section, f.name, str(f.type)) for f in fields(cls)}
        return raw

    def check_field(self, section: str, key: str) -> None:
        f = next(f for f in fields(SECTIONS[section]) if f.name == key)
        value = self._raw_value(section, key, str(f.type))
        _, problem = check_value(f"{section}.{key}", value, str(f.type), dict(f.metadata))
        label = self.query_one(f"#e-{section}-{key}", Static)
        label.update(problem or "")
        label.display = bool(problem)
        if problem:
            self.problems[f"{section}.{key}"] = problem
        else:
            self.problems.pop(f"{section}.{key}", None)

    def current_profile(self) -> Profile | None:
        try:
            profile = profile_from_dict(self.form_dict(), "form")
        except ProfileError as e:
            self.general_problems = [p for p in e.problems if p.split(":")[0] not in self.problems]
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
        self.dirty = True
        if self._advice_timer is not None:
            self._advice_timer.stop()
        self._advice_timer = self.set_timer(ADVICE_DELAY_S, self.refresh_advice)

    # ----------------------------------------------------------- advice

    def refresh_advice(self) -> None:
        body = self.query_one("#advice-body", Static)
        profile = self.current_profile()
        self.suggestion = None
        if profile is None:
            body.update(Text("fix the fields marked in red for an estimate", style="yellow"))
            return
        gpu_name = self.query_one("#advice-gpu", Select).value
        try:
            gpu = lookup_gpu(str(gpu_name))
            spec = lookup_model(profile.model.name)
        except CatalogError as e:
            body.update(Text(f"no estimate: {e}", style="dim"))
            return
        target = Target(gpu.name, gpu.memory_gib, gpu.memory_gib, gpu)
        try:
            setup = setup_from_profile(profile, gpu.bf16)
            mem = estimate_memory(spec, setup)
            speed = estimate_speed(spec, setup, gpu)
            review = review_profile(spec, setup, target)
        except EstimateError as e:
            body.update(Text(str(e), style="red"))
            return
        text = Text()
        text.append_text(meter(mem.peak_vram_gib, gpu.memory_gib, 24))
        text.append(f"\n{mem.peak_vram_gib:.1f} of {gpu.memory_gib:.0f} GiB peak\n", style="bold")
        text.append("fits\n" if review.fits else "does not fit\n", style="bold green" if review.fits else "bold red")
        for key in BREAKDOWN:
            text.append(f"  {key:13} {mem.breakdown[key]:6.2f} GiB\n")
        text.append(f"~{speed.tokens_per_s:,.0f} tokens/s on {gpu.name}\n")
        data = Path(profile.data.path)
        if data.is_file():
            tokens = data.stat().st_size / 4 * profile.train.epochs  # about 4 bytes of text per token
            text.append(f"≈{tokens / speed.tokens_per_s / 60:,.0f} min for the data\n", style="dim")
        fitting = [f for f in review.fixes if f["fits"]]
        if not review.fits and fitting:
            self.suggestion = fitting[0]
            text.append(f"\n{fitting[0]['change']}: {fitting[0]['peak_vram_gib']:.1f} of {gpu.memory_gib:.0f} GiB "
                        f"— press F4 to apply", style="bold cyan")
        elif not review.fits:
            text.append("\nno single change fits this card; try a bigger GPU or several", style="yellow")
        body.update(text)

    def action_apply_suggestion(self) -> None:
        if not self.suggestion:
            self.notify("nothing to apply: the profile fits (or no single change makes it fit)")
            return
        for dotted, value in self.suggestion["set"].items():
            section, key = dotted.split(".")
            widget = self.query_one(f"#{field_id(section, key)}")
            if value == "x2":
                widget.value = str(int(widget.value) * 2)
            elif isinstance(widget, Input):
                widget.value = str(value)
            else:
                widget.value = value
        self.notify(f"applied: {self.suggestion['change']}")
        self.dirty = True
        self.refresh_advice()

    # ----------------------------------------------------------- saving

    def _writable_path(self) -> Path | None:
        if self.path is None:
            return None
        bundled = bundled_profiles_dir().resolve()
        if bundled in self.path.resolve().parents:
            return user_profiles_dir() / self.path.name  # bundled templates stay untouched
        return self.path

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
        self.dirty = False
        self.title = f"profile {path.stem}"
        self.app.profiles_changed()
        return True

    def action_save(self) -> None:
        path = self._writable_path()
        if path is None:
            self.action_save_as()
            return
        self._save_to(path)

    def action_save_as(self) -> None:
        from studio.ui.dialogs import Ask

        def done(name: str | None) -> None:
            if not name:
                return
            dest = user_profiles_dir() / (name if name.endswith(".toml") else f"{name}.toml")
            if dest.exists() and dest != self.path:
                self.notify(f"{dest} exists; pick another name", severity="error")
                return
            if self.path and dest != self.path and self.path.exists() and bundled_profiles_dir().resolve() not in \
                    self.path.resolve().parents:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(self.path.read_text())  # keep the source's comments in the copy
            self._save_to(dest)

        self.app.push_screen(Ask("save the profile as (name):", self.path.stem if self.path else ""), done)

    def action_run(self) -> None:
        if self.dirty or self._writable_path() != self.path:
            self.action_save()
        if self.path and not self.dirty:
            self.app.start_profile(self.path)

    def action_back(self) -> None:
        if not self.dirty:
            self.app.pop_screen()
            return
        from studio.ui.dialogs import Confirm

        def done(discard: bool | None) -> None:
            if discard:
                self.app.pop_screen()

        self.app.push_screen(Confirm("discard unsaved changes?"), done)

