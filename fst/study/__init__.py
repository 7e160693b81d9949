"""`fst compare`, the loss study: one run per style loss at equal budget, evaluated and reported."""
