"""`qwen-min bench NAME` (command.py): one module per benchmark, each reporting ratios against a reference run in
the same process; corpus.py builds the mixed-script text the tokenizer benchmark encodes."""
