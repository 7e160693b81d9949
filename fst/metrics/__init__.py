"""How far a stylized image is from its painting and its photo, measured (`fst compare`, studies)."""
