from __future__ import annotations

import pytest
import torch

from studio.runtime.checkpoints import make_tokenizer
from studio.runtime.prompts import encode_prompt, parse_weights, tokenize_weighted


@pytest.mark.parametrize(("prompt", "expected"), [
    ("a cat", [("a cat", 1.0)]),
    ("a (red) cat", [("a ", 1.0), ("red", 1.1), (" cat", 1.0)]),
    ("((red))", [("red", pytest.approx(1.21))]),
    ("(red:1.5) cat", [("red", 1.5), (" cat", 1.0)]),
    ("((red:0.5), blue)", [("red", 0.5), (", blue", 1.1)]),
    ("a \\(literal\\) bracket", [("a (literal) bracket", 1.0)]),
    ("[square] brackets", [("[square] brackets", 1.0)]),
    # ComfyUI takes whatever follows the last colon as the weight when it is a number…
    ("(time: 12:30)", [("time: 12", 30.0)]),
    # …and otherwise keeps the colon as text.
    ("(ratio: a:b)", [("ratio: a:b", pytest.approx(1.1))]),
    ("unbalanced (open", [("unbalanced ", 1.0), ("(open", 1.0)]),
])
def test_weights_are_read_as_comfyui_reads_them(prompt, expected):
    assert [(run.text, run.weight) for run in parse_weights(prompt)] == expected


def test_long_prompts_are_split_into_77_token_chunks_without_losing_text():
    tokenizer = make_tokenizer()
    prompt = ", ".join(f"word{i}" for i in range(60))  # well over 75 tokens
    chunks = tokenize_weighted(tokenizer, prompt)
    assert len(chunks) >= 2 and all(len(chunk) == 77 for chunk in chunks)
    assert all(chunk[0][0] == 49406 for chunk in chunks)
    body = [token for chunk in chunks for token, _, _ in chunk[1:] if token not in (49406, 49407)]
    assert body == tokenizer(prompt, add_special_tokens=False)["input_ids"]


def test_weights_and_length_change_the_encoding(model_root):
    from transformers import CLIPTextModel

    encoder = CLIPTextModel.from_pretrained(model_root / "checkpoints" / "tiny-sd15" / "text_encoder")
    tokenizer = make_tokenizer()
    plain, _ = encode_prompt(tokenizer, encoder, "a red circle")
    weighted, _ = encode_prompt(tokenizer, encoder, "a (red:1.5) circle")
    unit, _ = encode_prompt(tokenizer, encoder, "a (red:1.0) circle")
    long, _ = encode_prompt(tokenizer, encoder, "a red circle, " * 30)
    assert plain.shape == (1, 77, 32) and long.shape[1] == 154
    assert torch.allclose(unit, plain)
    assert not torch.allclose(weighted, plain)
    # Only the weighted token moves (plus its causal followers); the start token stays.
    assert torch.allclose(weighted[0, 0], plain[0, 0])
    skipped, _ = encode_prompt(tokenizer, encoder, "a red circle", stop_at_layer=-2)
    assert not torch.allclose(skipped, plain)



def test_embeddings_are_written_into_the_prompt_without_changing_the_model(model_root, tmp_path):
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    from studio.runtime.embeddings import EmbeddingLibrary
    from studio.runtime.models import ModelFolders

    encoder = CLIPTextModel.from_pretrained(model_root / "checkpoints" / "tiny-sd15" / "text_encoder")
    before = {key: value.clone() for key, value in encoder.state_dict().items()}
    (tmp_path / "embeddings").mkdir()
    torch.manual_seed(3)
    save_file({"emb_params": torch.randn(2, 32)}, str(tmp_path / "embeddings" / "inkwash.safetensors"))
    torch.save({"string_to_param": {"*": torch.randn(1, 32)}, "name": "old"}, tmp_path / "embeddings" / "old.pt")
    library = EmbeddingLibrary(ModelFolders.from_roots([tmp_path]))
    lookup = lambda name: library.vectors(name, 32)  # noqa: E731
    tokenizer = make_tokenizer()
    plain, _ = encode_prompt(tokenizer, encoder, "a cat, ")
    styled, _ = encode_prompt(tokenizer, encoder, "a cat, embedding:inkwash", embeddings=lookup)
    other, _ = encode_prompt(tokenizer, encoder, "a cat, embedding:old", embeddings=lookup)
    assert not torch.allclose(styled, plain) and not torch.allclose(styled, other)
    assert torch.allclose(styled[0, :3], plain[0, :3])  # tokens before the embedding are unchanged
    chunk = tokenize_weighted(tokenizer, "a cat, embedding:inkwash", lookup)[0]
    assert sum(vector is not None for _, _, vector in chunk) == 2
    assert all(torch.equal(value, before[key]) for key, value in encoder.state_dict().items())
    with pytest.raises(Exception, match="embedding not found in the embeddings folders"):
        encode_prompt(tokenizer, encoder, "embedding:missing", embeddings=lookup)
    with pytest.raises(Exception, match="needs 64"):
        library.vectors("inkwash", 64)
