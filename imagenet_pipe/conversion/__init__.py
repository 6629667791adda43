"""Raw download -> globally shuffled, equal-sized WebDataset shards plus every consumer's index."""
