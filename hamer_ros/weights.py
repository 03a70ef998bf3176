"""Where to get the HaMeR weights: the one text every error and log line about them reuses.

Kept free of torch so the node can use it before it imports the model.
"""

WEIGHTS_HINT = (
    "Get the HaMeR weights from the authors' demo data (hamer_demo_data.tar.gz, see the HaMeR "
    "project's fetch_demo_data.sh) and use _DATA/hamer_ckpts/checkpoints/hamer.ckpt, keeping "
    "model_config.yaml one folder above it. The checkpoint holds MANO too; MANO's licence applies "
    "(https://mano.is.tue.mpg.de). MANO_RIGHT.pkl from there ('Models & Code') is optional.")
