"""From text to batches: where the text comes from, the tokenizer, the tokenized and cached data set,
reading direction and masked-token batches."""
