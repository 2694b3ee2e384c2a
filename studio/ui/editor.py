"""The profile editor: a form over every profile field, checked as you type, with
live advice beside it (estimated peak VRAM against a GPU, breakdown, speed, and
the change that makes it fit). Saving keeps the comments of a hand-written file."""

from __future__ import annotations

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

from studio.hardware import Inventory
from studio.planning.advisor import review_profile
from studio.planning.catalog import CatalogError, catalog_gpus
from studio.planning.estimate import BREAKDOWN, EstimateError
from studio.planning.fixes import FIXES
from studio.planning.inventory import described_inventory
from studio.planning.layout import LayoutError
from studio.paths import bundled_profiles_dir
from studio.profiles.library import save_preserving_comments, user_profile_path
from studio.profiles.profile import SECTIONS, Profile, ProfileError, check_value, load_profile, parse_toml, profile_from_dict
from studio.ui.widgets import meter

ADVICE_DELAY_S = 0.2


def field_id(section: str, key: str) -> str:
    return f"f-{section}-{key}"


def advice_inventory(gpu_name: str, machine: Inventory, profile: Profile) -> Inventory:
    """This machine's GPUs when the picked card is one of them; else as many of the picked card as the profile asks."""
    if any(g.name == gpu_name for g in machine.gpus):
        return machine
    return described_inventory(f"{profile.hardware.gpu_count}x {gpu_name}", source="the editor")


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
        if meta.get("switch"):
            yield Select([("auto", "auto"), ("on", True), ("off", False)], value=value, id=fid, allow_blank=False,
                         compact=True)
        elif str(f.type) == "bool":
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
        gpu_name = str(self.query_one("#advice-gpu", Select).value)
        try:
            inventory = advice_inventory(gpu_name, self.app.inventory, profile)
            review = review_profile(profile, inventory)
        except (CatalogError, EstimateError, LayoutError) as e:
            body.update(Text(f"no estimate: {e}", style="dim"))
            return
        plan = review.plan
        assert plan is not None and plan.memory is not None and plan.gpu is not None
        mem, gpu, per = plan.memory, plan.gpu, " per GPU" if plan.layout.processes > 1 else ""
        text = Text()
        text.append_text(meter(review.peak_vram_gib, gpu.memory_total_gib, 24))
        text.append(f"\n{review.peak_vram_gib:.1f} of {gpu.memory_total_gib:.0f} GiB peak{per}\n", style="bold")
        if plan.layout.processes > 1:
            text.append(f"{plan.layout.processes} GPUs, {plan.layout.strategy}\n")
        text.append("fits\n" if review.fits else "does not fit\n", style="bold green" if review.fits else "bold red")
        for key in BREAKDOWN:
            text.append(f"  {key:13} {mem.breakdown[key]:6.2f} GiB\n")
        if plan.speed:
            text.append(f"~{plan.speed.tokens_per_s:,.0f} tokens/s on {gpu.name}\n")
            data = Path(profile.data.path)
            if data.is_file():
                tokens = data.stat().st_size / 4 * profile.train.epochs  # about 4 bytes of text per token
                text.append(f"≈{tokens / plan.speed.tokens_per_s / 60:,.0f} min for the data\n", style="dim")
        fitting = [f for f in review.fixes if f["fits"]]
        if not review.fits and fitting:
            self.suggestion = fitting[0]
            text.append(f"\n{fitting[0]['change']}: {fitting[0]['peak_vram_gib']:.1f} of {gpu.memory_total_gib:.0f} GiB "
                        f"— press F4 to apply", style="bold cyan")
        elif not review.fits:
            text.append("\nno single change fits this card; try a bigger GPU or several", style="yellow")
        body.update(text)

    def action_apply_suggestion(self) -> None:
        profile = self.current_profile()
        if not self.suggestion or profile is None:
            self.notify("nothing to apply: the profile fits (or no single change makes it fit)")
            return
        fix = next(f for f in FIXES if f.name == self.suggestion["fix"])
        changed = fix.apply(profile)
        if changed is None:
            return
        self.show_values(changed, list(self.suggestion["set"]))
        self.notify(f"applied: {self.suggestion['change']}")
        self.dirty = True
        self.refresh_advice()

    def show_values(self, profile: Profile, keys: list[str]) -> None:
        """Put the profile's values for `keys` (dotted) into their form fields."""
        for dotted in keys:
            section, key = dotted.split(".")
            widget = self.query_one(f"#{field_id(section, key)}")
            value = getattr(getattr(profile, section), key)
            if isinstance(widget, Input):
                widget.value = ", ".join(value) if isinstance(value, list) else (
                    f"{value:g}" if isinstance(value, float) else str(value))
            else:
                widget.value = value

    # ----------------------------------------------------------- saving

    def _writable_path(self) -> Path | None:
        if self.path is None:
            return None
        bundled = bundled_profiles_dir().resolve()
        if bundled in self.path.resolve().parents:
            return user_profile_path(self.path.stem)  # bundled templates stay untouched
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
        from studio.ui.dialogs import ProfileNameDialog

        def done(dest: Path | None) -> None:
            if dest is None:
                return
            if dest.exists() and dest != self.path:
                self.notify(f"{dest} exists; pick another name", severity="error")
                return
            if self.path and dest != self.path and self.path.exists() and bundled_profiles_dir().resolve() not in \
                    self.path.resolve().parents:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(self.path.read_text())  # keep the source's comments in the copy
            self._save_to(dest)

        self.app.push_screen(ProfileNameDialog("save the profile as (name):", self.path.stem if self.path else ""), done)

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

