# Hugging Face Docker Space (README front matter: sdk: docker, app_port: 7860), or any container host:
#   docker build -t genlab . && docker run -p 7860:7860 genlab      -> http://localhost:7860
# One port serves the Streamlit dashboard at / and the Gradio explorer at /explorer.
# GENLAB_PUBLIC=1 caps training from the browser (one run at a time, GENLAB_MAX_STEPS steps).
FROM python:3.11-slim

# The two offline data sets (docs/datasets.md): Fashion-MNIST and the colour emoji font with its groups.
RUN apt-get update && apt-get install -y --no-install-recommends dataset-fashion-mnist fonts-noto-color-emoji \
        unicode-data && rm -rf /var/lib/apt/lists/*

# Spaces run the container as user 1000; give it a home and the app folder.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY --chown=user requirements.txt .
# CPU wheels of torch/torchvision (a Space's free hardware has no GPU; the CUDA wheels are ~2 GB larger).
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt

COPY --chown=user . .
USER user
ENV HOME=/home/user \
    PYTHONUNBUFFERED=1 \
    GENLAB_PUBLIC=1 \
    GENLAB_MAX_ACTIVE_RUNS=1 \
    GENLAB_MAX_STEPS=2000 \
    GENLAB_RUNS_ROOT=/home/user/app/runs \
    GENLAB_DATA_ROOT=/home/user/app/data
EXPOSE 7860
CMD ["python", "-m", "genlab.serve", "--host", "0.0.0.0", "--port", "7860", "--public"]
