"""Seed 003's TensorFlow 1 graph code, run in TF 2.x's compat.v1: a reference for gankit's preset.

Not part of gankit and not run by its tests: it needs TensorFlow, in a virtual environment of its own.

    # 1. MNIST's training images (uint8 [N, 784]) and labels, with gankit's data layer (project venv)
    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/reference/seed003_tf1.py --export mnist.npz
    # 2. the seed's graph (tensorflow-cpu==2.15.1 in its own venv, as for seed004_keras.py)
    /tmp/tfenv/bin/python benchmarks/reference/seed003_tf1.py mnist.npz OUT.jsonl STEPS SEED [G_KEEP [G_LOSS]]

The document lost some lines in printing (the two `conv2d_transpose` calls' first lines and the
`sess.run` lines of the training loop); they are filled in the only way the surviving arguments
allow: `tf.nn.conv2d_transpose(h_img, W_conv, ...)` and `(h2_img, W_conv2, ...)` with TF's default
'SAME' padding, and `sess.run(generate_optimiser / detect_optimiser, feed_dict=...)` with the feeds
that survive. G's feed shows no `keep_prob`, which the graph needs, so G's step gets G_KEEP: 0.5 by
default, like D's (gankit's D is in training mode in G's step too), or 1.0 for no dropout there.
G_LOSS is `printed` (default: G minimises log(D's fake probability), the saturating minimax loss) or
`ns` (G minimises -log(1 - D's fake probability), the non-saturating loss that gankit's preset uses).
Python 2's prints become print(). Every 100 steps (the seed's measurement) OUT.jsonl gets error1,
error2, who trains, and how much of G's output is above 0 (G's clip kills the gradient of a pixel at 0).
"""
import json
import sys

import numpy as np

if len(sys.argv) == 3 and sys.argv[1] == "--export":
    from gankit.data import load_dataset

    ds = load_dataset("mnist", split="train")
    np.savez(sys.argv[2], x=ds.images.numpy().reshape(len(ds.images), 784), y=ds.labels.numpy())
    sys.exit(0)
if len(sys.argv) not in (5, 6, 7) or (len(sys.argv) == 7 and sys.argv[6] not in ("printed", "ns")):
    sys.exit(__doc__)

import tensorflow.compat.v1 as tf  # noqa: E402

tf.disable_eager_execution()
data_path, out, steps, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
g_keep = float(sys.argv[5]) if len(sys.argv) >= 6 else 0.5
g_loss = sys.argv[6] if len(sys.argv) == 7 else "printed"
np.random.seed(seed)
tf.set_random_seed(seed)
cfg = tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
sess = tf.InteractiveSession(config=cfg)


def weight_variable(shape, name):
    initial = tf.truncated_normal(shape, stddev=2.0 / np.sqrt(np.prod(shape)))  # He et al.
    return tf.Variable(initial, name=name)


def bias_variable(shape, name):
    return tf.Variable(tf.constant(0.0, shape=shape), name=name)


def conv2d(x, W):
    return tf.nn.conv2d(x, W, strides=[1, 1, 1, 1], padding='SAME')


def max_pool_2x2(x):
    return tf.nn.max_pool(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding='SAME')


class Detect:
    def __init__(self):
        self.W_conv1 = weight_variable([5, 5, 1, 32], name='W_conv1')
        self.b_conv1 = bias_variable([32], name='b_conv1')
        self.W_conv2 = weight_variable([5, 5, 32, 64], name='W_conv2')
        self.b_conv2 = bias_variable([64], name='b_conv2')
        self.W_fc1 = weight_variable([7 * 7 * 64 + 10, 1024], name='W_fc1')
        self.b_fc1 = bias_variable([1024], name='b_fc1')
        self.W_fc2 = weight_variable([1024, 1], name='W_fc2')
        self.b_fc2 = bias_variable([1], name='b_fc2')
        self.all_vars = [self.W_conv1, self.b_conv1, self.W_conv2, self.b_conv2,
                         self.W_fc1, self.b_fc1, self.W_fc2, self.b_fc2]

    def calc(self, x, y, keep_prob):
        x_image = tf.reshape(x, [-1, 28, 28, 1])
        h_conv1 = tf.nn.relu(conv2d(x_image, self.W_conv1) + self.b_conv1)
        h_pool1 = max_pool_2x2(h_conv1)
        h_conv2 = tf.nn.relu(conv2d(h_pool1, self.W_conv2) + self.b_conv2)
        h_pool2 = max_pool_2x2(h_conv2)
        h_pool2_flat = tf.reshape(h_pool2, [-1, 7 * 7 * 64])
        h_pool2_flat_plus_y = tf.concat((h_pool2_flat, y), 1)
        h_fc1 = tf.nn.relu(tf.matmul(h_pool2_flat_plus_y, self.W_fc1) + self.b_fc1)
        h_fc1_drop = tf.nn.dropout(h_fc1, keep_prob=keep_prob)
        p_fake = tf.sigmoid(tf.matmul(h_fc1_drop, self.W_fc2) + self.b_fc2)
        return tf.clip_by_value(p_fake, 1e-9, 1 - 1e-9)


class GenerateSmaller:
    def __init__(self, y, noise, keep_prob, batch_size):
        W_fc1 = weight_variable([10 + 2, 7 * 7 * 64], name='G_W_fc1')
        B_fc1 = bias_variable([7 * 7 * 64], name='G_B_fc1')
        h_fc1 = tf.nn.relu(tf.matmul(tf.concat((y, noise), 1), W_fc1) + B_fc1)
        h_img = tf.reshape(h_fc1, [-1, 7, 7, 64])
        W_conv = weight_variable([5, 5, 32, 64], name="G_W_conv")
        B_conv = bias_variable([32], name="G_B_conv")
        h2_img = tf.nn.relu(tf.nn.conv2d_transpose(h_img, W_conv, output_shape=[batch_size, 28, 28, 32],
                                                   strides=[1, 4, 4, 1]) + B_conv)
        W_conv2 = weight_variable([3, 3, 1, 32], name="G_W_conv2")
        B_conv2 = bias_variable([1], name="G_B_conv2")
        x_img = tf.nn.conv2d_transpose(h2_img, W_conv2, output_shape=[batch_size, 28, 28, 1],
                                       strides=[1, 1, 1, 1]) + B_conv2
        self.x = tf.clip_by_value(tf.sigmoid(tf.reshape(x_img, [-1, 28 * 28, 1])) * 1.2 - 0.1, 0.0, 1.0)
        self.all_vars = [W_fc1, B_fc1, W_conv, B_conv, W_conv2, B_conv2]


x = tf.placeholder(tf.float32, [None, 784], name='x_real')
y = tf.placeholder(tf.float32, [None, 10], name='y')
keep_prob = tf.placeholder(tf.float32, name='keep_prob')
detect = Detect()
detect_on_real = detect.calc(x, y, keep_prob)
noise = tf.placeholder(tf.float32, [None, 2], name='noise')
batch_size = 10
generate = GenerateSmaller(y, noise, keep_prob, batch_size=batch_size)
detect_on_generate = detect.calc(generate.x, y, keep_prob)
detect_surprise = tf.reduce_mean(-tf.log(1 - detect_on_real) - tf.log(detect_on_generate), axis=[1])
detect_fake_surprise = tf.reduce_mean(-tf.log(detect_on_generate), axis=[1])
detect_optimiser = tf.train.AdamOptimizer(1e-4).minimize(detect_surprise, var_list=detect.all_vars)
if g_loss == "printed":
    generate_optimiser = tf.train.AdamOptimizer(1e-4).minimize(-detect_fake_surprise, var_list=generate.all_vars)
else:  # the non-saturating loss: -log of the probability that D calls the fakes real
    g_ns_loss = tf.reduce_mean(-tf.log(1 - detect_on_generate), axis=[1])
    generate_optimiser = tf.train.AdamOptimizer(1e-4).minimize(g_ns_loss, var_list=generate.all_vars)
sess.run(tf.global_variables_initializer())

d = np.load(data_path)
images, labels = d["x"].astype(np.float32) / 255.0, np.eye(10, dtype=np.float32)[d["y"]]
order, pos = np.random.permutation(len(images)), 0


def next_batch():  # input_data's next_batch: shuffled epochs
    global order, pos
    if pos + batch_size > len(images):
        order, pos = np.random.permutation(len(images)), 0
    idx = order[pos:pos + batch_size]
    pos += batch_size
    return images[idx], labels[idx]


optimise_detector = optimise_generator = True
global_step = 0
with open(out, "w") as f:
    while global_step <= steps:
        batch = next_batch()
        if optimise_generator:
            sess.run(generate_optimiser, feed_dict={keep_prob: g_keep, noise: np.random.randn(batch_size, 2),
                                                    y: batch[1]})
        if optimise_detector:
            sess.run(detect_optimiser, feed_dict={keep_prob: .5, x: batch[0], y: batch[1],
                                                  noise: np.random.randn(batch_size, 2)})
        global_step += 1
        if global_step % 100 == 0:
            feed = {keep_prob: 1.0, noise: np.random.randn(batch_size, 2), x: batch[0], y: batch[1]}
            error1 = np.mean(sess.run(detect_surprise, feed_dict=feed))
            feed[noise] = np.random.randn(batch_size, 2)
            error2, gx = sess.run([detect_fake_surprise, generate.x], feed_dict=feed)
            error2 = np.mean(error2)
            if np.isnan(error1) or np.isnan(error2):
                print("Aborting on NAN Detected")
                break
            overall_error = (error1 + error2) / 2
            optimise_generator = bool(overall_error < 0.8)
            optimise_detector = bool(0.3 < overall_error)
            f.write(json.dumps({"step": global_step, "error1": float(error1), "error2": float(error2),
                                "train_g": optimise_generator, "train_d": optimise_detector,
                                "alive": float((gx > 0).mean()), "mean": float(gx.mean())}) + "\n")
            f.flush()
            if global_step % 1000 == 0:
                print(f"{global_step} Error is {error1:f} {error2:f}  alive {float((gx > 0).mean()):.3f}")
                np.save(out.replace(".jsonl", f"-samples{global_step}.npy"), gx.reshape(-1, 28, 28))
