"""GGUF and Ollama exports of every family studio claims, on tiny random models with each family's real
tokenizer and config shape (tests/real_models.py): the file loads in llama.cpp, llama.cpp tokenizes the chat
prompt as Hugging Face does (BOS once), and its next-token choices and logits are the merged model's; the
Modelfile's Go template, rendered as Ollama renders it, is the Hugging Face template's prompt."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from real_models import SHAPES, build, tokenizer_folder

LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
NO_RUNTIME = "llama-cpp-python is not installed here (.ci/run builds it); the GGUF cannot be run in llama.cpp"
QUESTIONS = ("What is 11 plus 5?", "Name a colour.", "What is the capital of France?")
CHATS = ([("user", "What is 11 plus 5?")],
         [("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Name a colour.")],
         [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"), ("user", "What is 2+2?")])


@pytest.fixture(scope="module")
def go_renderer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/ollama_render built with Go: Go's own text/template renders the TEMPLATE, as in Ollama."""
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain here (.ci/run installs golang-go): Ollama's templates are Go templates")
    out = tmp_path_factory.mktemp("go") / "ollama-render"
    env = {"GOCACHE": str(out.parent / "cache"), "GOPATH": str(out.parent / "gopath"), "HOME": str(out.parent),
           "PATH": "/usr/bin:/bin:/usr/local/bin:/usr/local/go/bin", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=Path(__file__).parent / "ollama_render", check=True,
                   env=env)
    return out


def ollama_prompt(renderer: Path, modelfile: str, system: str | None, chat: list[tuple[str, str]]) -> str:
    template = modelfile.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    request = {"template": template, "system": system or "",
               "messages": [{"role": r, "content": c} for r, c in chat]}
    proc = subprocess.run([str(renderer)], input=json.dumps(request), capture_output=True, text=True, check=True)
    return proc.stdout


def hf_prompt(tokenizer, system: str | None, chat: list[tuple[str, str]]) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": r, "content": c}
                                                                              for r, c in chat]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# Llama 2 Chat's and CodeLlama Instruct's template: the system prompt inside the first user turn, BOS before
# every turn (as published with meta-llama/Llama-2-7b-chat-hf); tried with a SentencePiece tokenizer of its kind.
LLAMA2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
TEMPLATES = {"qwen2": ("qwen2", None), "llama3": ("llama3", None), "mistral-v0.1": ("mistral-v0.1", None),
             "mistral-v0.3": ("mistral-v0.3", None), "llama2-chat": ("mistral-v0.1", LLAMA2_CHAT)}


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_the_modelfile_renders_the_prompt_the_chat_template_renders(tmp_path: Path, go_renderer: Path,
                                                                    template: str) -> None:
    """1-, 2- and 3-turn chats, with and without a system prompt: Ollama's prompt (plus the BOS llama.cpp adds
    when the GGUF says so) is the Hugging Face template's, default system blocks included, a system prompt
    inside the first (Llama 2) or the last (Mistral v0.3) user turn too. A template that refuses a system role
    (Mistral v0.1) gets a Modelfile that says it leaves SYSTEM out."""
    from transformers import AutoTokenizer

    from studio.trainer.gguf_vocab import adds_bos_eos
    from studio.trainer.ollama import end_tokens, ollama_modelfile

    tokenizer_name, chat_template = TEMPLATES[template]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(tokenizer_name, tmp_path))
    if chat_template:
        tokenizer.chat_template = chat_template
    add_bos = adds_bos_eos(tokenizer)[0]
    modelfile, notes = ollama_modelfile("m.gguf", tokenizer, add_bos, end_tokens(tmp_path, tokenizer), 0.7, 0.9)
    compared = 0
    for system in (None, "Answer in one word."):
        for chat in CHATS:
            try:
                expected = hf_prompt(tokenizer, system, chat)
            except Exception:  # noqa: BLE001 - the template refuses a system role
                assert system and notes and "# this model's chat template has no system role" in modelfile
                continue
            got = (tokenizer.bos_token if add_bos else "") + ollama_prompt(go_renderer, modelfile, system, chat)
            assert got == expected, (system, chat)
            compared += 1
    assert compared >= 3
    stops = [line.split('"')[1] for line in modelfile.splitlines() if line.startswith("PARAMETER stop")]
    assert stops and all(len(tokenizer(s, add_special_tokens=False)["input_ids"]) == 1 for s in stops), stops
    if template == "qwen2":  # the default system block is there without SYSTEM, replaced with it
        assert "You are a helpful assistant." in ollama_prompt(go_renderer, modelfile, None, CHATS[0])
        assert "You are a helpful assistant." not in ollama_prompt(go_renderer, modelfile, "Be brief.", CHATS[0])


def next_token_agreement(llm, model, ids: list[int], steps: int = 12) -> tuple[int, int, float, float]:
    """llama.cpp and the HF model on the same tokens (the prompt, then the model's own greedy continuation):
    how many next-token choices agree, of how many; the largest logit difference; and the largest amount by
    which llama.cpp's choice falls short of the HF model's best logit (0 when they agree)."""
    import torch

    generated = model.generate(torch.tensor([ids]), max_new_tokens=steps, do_sample=False)[0].tolist()
    with torch.no_grad():
        hf = model(torch.tensor([generated])).logits[0].float().numpy()
    llm.reset()
    llm.eval(generated)
    ours = np.array(llm.scores[:len(generated)])[:, :hf.shape[1]]
    rows = slice(len(ids) - 1, len(generated) - 1)
    chosen = ours[rows].argmax(-1)
    best = hf[rows].max(-1)
    shortfall = float((best - hf[rows][np.arange(len(chosen)), chosen]).max())
    same = int((chosen == hf[rows].argmax(-1)).sum())
    return same, len(chosen), float(np.abs(hf[rows] - ours[rows]).max()), shortfall


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """Each family's model, built once, and its GGUFs, written on first use."""
    made: dict[tuple[str, str], tuple[Path, Path]] = {}

    def get(family: str, quant: str) -> tuple[Path, Path]:
        from studio.trainer.gguf_export import write_gguf

        if (family, "") not in made:
            tmp = tmp_path_factory.mktemp(family)
            made[(family, "")] = (build(SHAPES[family], tmp), tmp)
        folder, tmp = made[(family, "")]
        if (family, quant) not in made:
            made[(family, quant)] = (folder, write_gguf(folder, tmp / f"{family}-{quant}.gguf", quant))
        return made[(family, quant)]

    return get


@pytest.mark.slow
@pytest.mark.skipif(not LLAMA_CPP, reason=NO_RUNTIME)
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
@pytest.mark.parametrize("family", list(SHAPES))
def test_llama_cpp_runs_the_gguf_as_the_merged_model(exported, family: str, quant: str) -> None:
    """On three chat prompts: llama.cpp's tokens for the prompt text are Hugging Face's (BOS once), and at each
    of 12 greedy steps its next-token logits are the model's (f16: within 0.1 and the same choice, or one tied
    within 0.05; q8_0: within 3 (the logits spread 2.4) and the same choice at 75% of steps or more: 8-bit
    weights move the near-tied logits of random weights)."""
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf_path = exported(family, quant)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    llm = Llama(model_path=str(gguf_path), n_ctx=512, verbose=False, logits_all=True)
    adds_bos = llm.metadata.get("tokenizer.ggml.add_bos_token") == "true"
    same = total = 0
    worst = 0.0
    for question in QUESTIONS:
        messages = [{"role": "user", "content": question}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if adds_bos:
            assert text.startswith(tokenizer.bos_token)
            text = text[len(tokenizer.bos_token):]
        assert llm.tokenize(text.encode(), add_bos=True, special=True) == list(ids), question
        agree, steps, diff, shortfall = next_token_agreement(llm, model, list(ids))
        same, total, worst = same + agree, total + steps, max(worst, diff)
        if quant == "f16":
            assert shortfall <= 0.05, (question, shortfall)
    llm.close()
    if quant == "f16":
        assert worst <= 0.1, worst
    else:
        assert worst <= 3.0 and same / total >= 0.75, (worst, same, total)


@pytest.mark.slow
def test_the_gguf_carries_the_real_vocabulary_padding_rope_and_bos_flags(exported) -> None:
    """Read back: one token per embedding row (the padded rows as [PAD{i}]), SentencePiece scores and byte
    tokens for Mistral, Llama 3.1's rope_freqs, and the add-BOS flag as the tokenizer does it."""
    from transformers import AutoTokenizer

    from studio.trainer.gguf_export import read_back

    for family, rows, tokens, add_bos in (("qwen2.5", 152064, 151646, False), ("mistral-v0.1", 32000, 32000, True),
                                          ("llama-3.1", 128256, 128256, True)):
        folder, path = exported(family, "f16")
        back = read_back(path)
        assert len(back["tokens"]) == rows and back["tensors"]["token_embd.weight"].shape[0] == rows
        assert back["tokens"][tokens:] == [f"[PAD{i}]".encode() for i in range(tokens, rows)]
        assert back["fields"]["tokenizer.ggml.add_bos_token"] == [add_bos]
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert back["tokens"][tokenizer.eos_token_id] == tokenizer.eos_token.encode()
    assert read_back(exported("mistral-v0.1", "f16")[1])["fields"]["tokenizer.ggml.model"] == "llama"
    freqs = read_back(exported("llama-3.1", "f16")[1])["tensors"]["rope_freqs.weight"]
    assert freqs.shape == (8,) and freqs.min() == 1.0 and freqs.max() == 8.0


@pytest.mark.slow
@pytest.mark.skipif(not LLAMA_CPP, reason=NO_RUNTIME)
@pytest.mark.parametrize("model", ["builtin:tiny-qwen2", "qwen2.5", "mistral-v0.3"])
def test_a_trained_run_exports_a_gguf_that_llama_cpp_runs_as_the_merged_model(tmp_path: Path, monkeypatch,
                                                                                 go_renderer: Path, model: str) -> None:
    """The user's path: `studio run` (LoRA, a few steps) on the built-in tiny Qwen2 (its tokenizer once grew a
    token its embedding had no row for) and on folders with a real tokenizer and shape, then `studio export
    --gguf --quant f16 --ollama` and `--merge`: llama.cpp tokenizes the prompt Ollama would render as the
    model's tokenizer does, and its next-token choices along the merged model's greedy answer are the merged
    model's."""
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM

    from conftest import DEMO_DATA, studio, write_profile
    from studio.trainer.model import saved_tokenizer

    name = model if model.startswith("builtin:") else str(build(SHAPES[model], tmp_path / "base"))
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    profile = write_profile(tmp_path / "p.toml", DEMO_DATA, model={"name": name},
                            train={"max_steps": 3, "learning_rate": 5e-3, "batch_size": 4})
    result = json.loads(studio("run", str(profile), "--json").stdout.strip().splitlines()[-1])
    assert result["status"] == "completed", result
    exported = studio("export", result["id"], "--out", str(tmp_path / "gguf"), "--gguf", "--quant", "f16", "--ollama")
    assert exported.returncode == 0, exported.stderr
    merged = studio("export", result["id"], "--out", str(tmp_path / "merged"), "--merge")
    assert merged.returncode == 0, merged.stderr

    tokenizer = saved_tokenizer(tmp_path / "merged")  # as studio trained it (see saved_tokenizer)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    llm = Llama(model_path=str(next((tmp_path / "gguf").glob("*.gguf"))), n_ctx=512, verbose=False, logits_all=True)
    modelfile = (tmp_path / "gguf" / "Modelfile").read_text()
    for question in QUESTIONS:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                            return_dict=True)["input_ids"]
        prompt = ollama_prompt(go_renderer, modelfile, None, [("user", question)])
        assert llm.tokenize(prompt.encode(), add_bos=True, special=True) == list(ids), question
        agree, steps, diff, shortfall = next_token_agreement(llm, hf, list(ids), steps=8)
        # f16 of float32 weights: the same next token, or one tied with it within 0.05
        assert diff <= 0.1 and shortfall <= 0.05, (question, agree, steps, diff, shortfall)
    llm.close()


def small_folder(tmp_path: Path, vocab_size: int, rope: dict | None = None, model_type: str = "llama") -> Path:
    """A config and a byte-level BPE tokenizer of 7 tokens (no weights): what check_model reads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    config = {"model_type": model_type, "vocab_size": vocab_size, "hidden_size": 64, "num_attention_heads": 4,
              "num_hidden_layers": 1, "intermediate_size": 128}
    if rope:
        config["rope_parameters"] = rope
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate("abcdefg")}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def test_what_the_gguf_cannot_hold_is_refused_before_the_merge(tmp_path: Path) -> None:
    """Each refusal names the cause and the way out: a family it does not write, a RoPE scaling it does not
    write, a tokenizer of another kind, and a tokenizer with more tokens than the embedding has rows."""
    from studio.trainer.gguf_export import GgufError, check_model

    folder = small_folder(tmp_path, vocab_size=5)
    with pytest.raises(GgufError, match="7 tokens but the model's embedding has 5 rows"):
        check_model(folder, folder, "f16")
    check_model(small_folder(tmp_path / "ok", vocab_size=9), tmp_path / "ok" / "model", "f16")  # padded: fine
    with pytest.raises(GgufError, match="RoPE scaling is 'dynamic'.*convert_hf_to_gguf"):
        check_model(small_folder(tmp_path / "rope", 7, {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}),
                    None, "f16")
    with pytest.raises(GgufError, match="covers the families.*'gemma'"):
        check_model(small_folder(tmp_path / "gemma", 7, model_type="gemma"), None, "f16")
    unigram = small_folder(tmp_path / "unigram", 7)
    data = json.loads((unigram / "tokenizer.json").read_text())
    data["model"] = {"type": "Unigram", "unk_id": 0, "vocab": [["a", 0.0]]}
    (unigram / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(GgufError, match="the tokenizer is Unigram.*--merge"):
        check_model(unigram, unigram, "f16")
