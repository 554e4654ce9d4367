"""Seed 004's training loop as printed, run in TensorFlow's graph-mode Keras: a reference for gankit's preset.

Not part of gankit and not run by its tests: it needs TensorFlow, in a virtual environment of its own.

    # 1. the 6,000 ships as uint8 [N, 32, 32, 3], with gankit's data layer (project venv)
    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/reference/seed004_keras.py --export ships.npy
    # 2. the seed's code in Keras 2 with eager execution off (the TF 1.x path the seed ran on)
    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.15.1
    /tmp/tfenv/bin/python benchmarks/reference/seed004_keras.py ships.npy OUT.jsonl STEPS {01|11} SEED

``01`` scales images to [0, 1] as the seed does; ``11`` to [-1, 1], gankit's default reading. Every
step's D and GAN losses go to OUT.jsonl, and every 10 steps D's mean logit on that step's real and fake
batches (from its sigmoid output, so capped at +-16.1). The nets, optimizers, noisy targets and
sequential batches are the seed's; only `optimizers.RMSprop` is spelled `optimizers.legacy.RMSprop`
(the TF 1.x optimizer, which takes `lr` and `decay`), and the loop logs more.
"""
import json
import sys
import time

import numpy as np

if len(sys.argv) == 3 and sys.argv[1] == "--export":
    from gankit.data import load_dataset

    ds = load_dataset("cifar10:ship", split="train+test")
    np.save(sys.argv[2], np.ascontiguousarray(ds.images.numpy().transpose(0, 2, 3, 1)))
    sys.exit(0)
if len(sys.argv) != 6 or sys.argv[4] not in ("01", "11"):
    sys.exit(__doc__)

import tensorflow as tf  # noqa: E402

tf.compat.v1.disable_eager_execution()
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from tensorflow.keras import layers  # noqa: E402
from tensorflow.keras.models import Model  # noqa: E402

optimizers = tf.keras.optimizers.legacy

ships, out, iter_num, scale, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
np.random.seed(seed)
tf.compat.v1.set_random_seed(seed)
latent_dim, height, width, channels = 128, 32, 32, 3


def build_generator(latent_dim, height, width, channels):
    inputs = layers.Input(shape=(latent_dim,))
    x = layers.Dense(128 * 16 * 16)(inputs)
    x = layers.LeakyReLU()(x)
    x = layers.Reshape((16, 16, 128))(x)
    x = layers.Conv2D(256, 5, padding='same')(x)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2DTranspose(256, 4, strides=2, padding='same')(x)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2D(256, 5, padding='same')(x)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2D(256, 5, padding='same')(x)
    x = layers.LeakyReLU()(x)
    output = layers.Conv2D(channels, 7, activation='tanh', padding='same')(x)
    return Model(inputs, output)


def build_discriminator(height, width, channels):
    inputs = layers.Input(shape=(height, width, channels))
    x = layers.Conv2D(128, 3)(inputs)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2D(128, 4, strides=2)(x)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2D(128, 4, strides=2)(x)
    x = layers.LeakyReLU()(x)
    x = layers.Conv2D(128, 4, strides=2)(x)
    x = layers.LeakyReLU()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.4)(x)
    output = layers.Dense(1, activation='sigmoid')(x)
    model = Model(inputs, output)
    optimizer = optimizers.RMSprop(lr=0.0008, clipvalue=1.0, decay=1e-8)
    model.compile(optimizer=optimizer, loss='binary_crossentropy')
    return model


generator = build_generator(latent_dim, height, width, channels)
discriminator = build_discriminator(height, width, channels)
discriminator.trainable = False
gan_input = layers.Input(shape=(latent_dim,))
gan_output = discriminator(generator(gan_input))
gan = Model(gan_input, gan_output)
gan.compile(optimizer=optimizers.RMSprop(lr=0.0004, clipvalue=1.0, decay=1e-8), loss='binary_crossentropy')
print("G params", generator.count_params(), "D params", discriminator.count_params())

data = np.load(ships).astype('float64') / 255.0
if scale == '11':
    data = data * 2.0 - 1.0


def logit(p):
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(np.mean(np.log(p / (1 - p))))


batch_size = 32
start = 0
t0 = time.time()
with open(out, 'w') as f:
    for step in range(iter_num):
        random_latent_vectors = np.random.normal(size=(batch_size, latent_dim))
        generated_images = generator.predict(random_latent_vectors, verbose=0)
        real_images = data[start: start + batch_size]
        rec = {"step": step}
        if step % 10 == 0:
            rec["logit_real"] = logit(discriminator.predict(real_images, verbose=0))
            rec["logit_fake"] = logit(discriminator.predict(generated_images, verbose=0))
        combined_images = np.concatenate([generated_images, real_images])
        labels = np.concatenate([np.zeros((batch_size, 1)), np.ones((batch_size, 1))])
        labels += 0.05 * np.random.random(labels.shape)
        d_loss = discriminator.train_on_batch(combined_images, labels)
        random_latent_vectors = np.random.normal(size=(batch_size, latent_dim))
        misleading_labels = np.ones((batch_size, 1))
        gan_loss = gan.train_on_batch(random_latent_vectors, misleading_labels)
        rec.update(d_loss=float(d_loss), gan_loss=float(gan_loss), seconds=round(time.time() - t0, 1))
        f.write(json.dumps(rec) + "\n")
        f.flush()
        if step % 200 == 0:
            print(f"Iteration {step}/{iter_num}")
            print(f"[==============================] d-loss: {d_loss:.3f}, gan-loss: {gan_loss:.3f}")
        start += batch_size
        if start > len(data) - batch_size:
            start = 0
        if step in (199, 499, 999):
            np.save(out.replace('.jsonl', f'-samples{step + 1}.npy'),
                    generator.predict(np.random.normal(size=(16, latent_dim)), verbose=0))
