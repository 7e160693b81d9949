"""Files fst writes and photos it reads: atomic writes, writable output folders, images decoded
safely (EXIF orientation, any mode to RGB, bounded size)."""
