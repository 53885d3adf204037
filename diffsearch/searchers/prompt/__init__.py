"""The prompt searchers: negative prompts and rewordings for `diffsearch prompt`."""
