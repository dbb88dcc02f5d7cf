"""Safety benchmarks of a pretrained model's generations (Llama 2 paper, Touvron et al. 2023,
section 4.1 "Safety Benchmarks for Pretrained Models", Table 11): ``llama-audit prompts`` writes the
bundled benchmark prompts, ``llama-audit eval`` scores generations with the scan machinery
(generations are documents; resumable and mergeable like a scan), ``llama-audit report`` renders
the result beside the paper's numbers. See docs/eval.md."""
