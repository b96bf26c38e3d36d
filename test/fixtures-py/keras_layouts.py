#!/usr/bin/env python3
"""Writes MobileNetV2 weights in the layouts Keras' own saving code produces, with h5py (what Keras
uses), for edgetune's weight-loading tests. Independent of edgetune's TypeScript writer.

Input: --spec JSON {"layers": [{"name": <today's name>, "legacy": <release-file name>, "cls": ...,
"weights": [{"name": "kernel", "shape": [...], "offset": <float32 index>}]}], "top": {...} or null}
and --data, the raw little-endian float32 values. Layouts (--layout):

  keras2          model.save_weights('x.h5') in Keras 2 (legacy_h5_format.save_weights_to_hdf5_group):
                  root attrs layer_names/backend/keras_version, a group per layer (weightless ones
                  too, with an empty weight_names), datasets <layer>/<layer>/<weight>:0.
                  --names modern|legacy|mixed|unnamed picks the layer names (legacy: the
                  mobilenet_v2_weights_tf_dim_ordering_tf_kernels_* release files).
  tm-keras        a Teachable Machine keras_model.h5: model.save() of Sequential([sequential_1 (the
                  base, trainable, so its weights are listed trainable first), sequential_3 (head)]),
                  weights under model_weights/.
  keras3          Keras 3 model.save_weights('x.weights.h5') (saving_lib.H5IOStore):
                  layers/<class>[_N]/vars/<i>; --no-names for Keras < 3.6 (no name attribute on vars);
                  --nested wraps the base like Teachable Machine (Sequential of a Functional + a head).
  keras-archive   Keras 3 model.save('x.keras'): zip of metadata.json, config.json, model.weights.h5.

`--batch jobs.json` runs several: a JSON list of argument lists.
"""
import argparse
import io
import json
import re
import sys
import zipfile

import h5py
import numpy as np

BLOCKS = [(16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6), (64, 2, 6), (64, 1, 6), (64, 1, 6),
          (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6)]
KERAS3_CLASS = {'conv2d': 'Conv2D', 'depthwise_conv2d': 'DepthwiseConv2D', 'batch_normalization': 'BatchNormalization',
                'dense': 'Dense'}


def load(spec_path, data_path):
    spec = json.load(open(spec_path))
    data = np.fromfile(data_path, dtype='<f4')
    layers = spec['layers'] + ([spec['top']] if spec.get('top') else [])
    for layer in layers:
        for w in layer['weights']:
            n = int(np.prod(w['shape']))
            w['value'] = data[w['offset']:w['offset'] + n].reshape(w['shape'])
    return spec['layers'], spec.get('top')


def all_layers(names, base, top, top_name):
    """Every layer of the Keras MobileNetV2 graph in order, weightless ones included: (name, layer or None)."""
    weighted = {l['name']: l for l in base}
    name_of = {l['name']: names(l) for l in base}
    out = [('input_1', None), ('Conv1_pad', None), (name_of['Conv1'], weighted['Conv1']),
           (name_of['bn_Conv1'], weighted['bn_Conv1']), ('Conv1_relu', None)]
    in_c = None
    for i, (filters, stride, _) in enumerate(BLOCKS):
        prefix = 'expanded_conv_' if i == 0 else 'block_%d_' % i
        for part in (['depthwise', 'project'] if i == 0 else ['expand', 'depthwise', 'project']):
            if part == 'depthwise' and stride == 2:
                out.append((prefix + 'pad', None))
            conv, bn = prefix + part, prefix + part + '_BN'
            out.append((name_of[conv], weighted[conv]))
            out.append((name_of[bn], weighted[bn]))
            if part != 'project':
                out.append((prefix + part + '_relu', None))
        out_c = weighted[prefix + 'project']['weights'][0]['shape'][-1]
        if in_c == out_c and stride == 1:
            out.append((prefix + 'add', None))
        in_c = out_c
    out += [(name_of['Conv_1'], weighted['Conv_1']), (name_of['Conv_1_bn'], weighted['Conv_1_bn']), ('out_relu', None)]
    if top:
        out += [('global_average_pooling2d_1', None), (top_name, top)]
    return out


def naming(kind):
    counters = {}

    def unnamed(layer):
        cls = layer['cls']
        counters[cls] = counters.get(cls, 0) + 1
        return '%s_%d' % (cls, counters[cls])

    if kind == 'modern':
        return lambda l: l['name']
    if kind == 'legacy':
        return lambda l: l['legacy']
    if kind == 'mixed':
        # Published files reportedly mix generations: blocks 0-8 legacy, the rest today's names.
        def mixed(l):
            m = re.match(r'^(?:mobl|bn)(\d+)_', l['legacy'])
            return l['legacy'] if m and int(m.group(1)) <= 8 else l['name']
        return mixed
    if kind == 'unnamed':
        return unnamed
    raise SystemExit('unknown --names ' + kind)


def save_attr(group, name, data):
    # legacy_h5_format.save_attributes_to_hdf5_group (the files are small: one chunk).
    group.attrs[name] = data


def write_keras2(path, base, top, names, top_name, swap=None, drop=None):
    layers = all_layers(naming(names), base, top, top_name)
    if drop:
        layers = [(n, l) for n, l in layers if n != drop]
    if swap:
        a, b = [i for i, (n, _) in enumerate(layers) if n in swap]
        layers[a], layers[b] = layers[b], layers[a]
    with h5py.File(path, 'w') as f:
        save_attr(f, 'layer_names', [n.encode('utf8') for n, _ in layers])
        f.attrs['backend'] = b'tensorflow'
        f.attrs['keras_version'] = b'2.1.6'
        for name, layer in layers:
            g = f.create_group(name)
            weights = layer['weights'] if layer else []
            weight_names = [('%s/%s:0' % (name, w['name'])).encode('utf8') for w in weights]
            save_attr(g, 'weight_names', weight_names)
            for wn, w in zip(weight_names, weights):
                d = g.create_dataset(wn, w['value'].shape, dtype=w['value'].dtype)
                d[:] = w['value']


def write_tm_keras(path, base, top, scope=''):
    head = [('dense_Dense1', [('kernel', (1280, 100)), ('bias', (100,))]), ('dense_Dense2', [('kernel', (100, 2))])]
    rng = np.random.default_rng(1)
    with h5py.File(path, 'w') as f:
        f.attrs['keras_version'] = b'2.4.0'
        f.attrs['backend'] = b'tensorflow'
        f.attrs['model_config'] = json.dumps({'class_name': 'Sequential', 'config': {'name': 'sequential_4', 'layers': [
            {'class_name': 'Sequential', 'config': {'name': 'sequential_1'}},
            {'class_name': 'Sequential', 'config': {'name': 'sequential_3'}}]}}).encode('utf8')
        mw = f.create_group('model_weights')
        save_attr(mw, 'layer_names', [b'sequential_1', b'sequential_3'])
        mw.attrs['backend'] = b'tensorflow'
        mw.attrs['keras_version'] = b'2.4.0'
        # A trainable nested model lists trainable weights of all its layers first, then the rest.
        trainable = [(l, w) for l in base for w in l['weights'] if not w['name'].startswith('moving_')]
        frozen = [(l, w) for l in base for w in l['weights'] if w['name'].startswith('moving_')]
        g = mw.create_group('sequential_1')
        names = [('%s%s/%s:0' % (scope, l['name'], w['name'])).encode('utf8') for l, w in trainable + frozen]
        save_attr(g, 'weight_names', names)
        for n, (_, w) in zip(names, trainable + frozen):
            g.create_dataset(n, data=w['value'])
        g = mw.create_group('sequential_3')
        names = [('%s/%s:0' % (l, w)).encode('utf8') for l, ws in head for w, _ in ws]
        save_attr(g, 'weight_names', names)
        for n, (_, shape) in zip(names, [x for _, ws in head for x in ws]):
            g.create_dataset(n, data=rng.standard_normal(shape).astype('<f4'))


def keras3_layers(base, top):
    """The Functional MobileNetV2's layers as Keras 3 lists them: (class snake name, layer name, layer or None)."""
    out = []
    for name, layer in all_layers(naming('modern'), base, top, 'predictions'):
        if layer:
            out.append((layer['cls'], name, layer))
        elif name == 'input_1':
            out.append(('input_layer', name, None))
        elif name.endswith('_pad'):
            out.append(('zero_padding2d', name, None))
        elif name.endswith('_add'):
            out.append(('add', name, None))
        elif name.startswith('global'):
            out.append(('global_average_pooling2d', name, None))
        else:
            out.append(('re_lu', name, None))
    return out


def write_container(f, at, items, with_names):
    """saving_lib._save_container_state: each item at <at>/<class>[_N] (N counts that class), vars/<i>."""
    used = {}
    for cls, name, layer in items:
        if cls in used:
            used[cls] += 1
            key = '%s_%d' % (cls, used[cls])
        else:
            used[cls] = 0
            key = cls
        path = '%s/%s' % (at, key)
        if callable(layer):
            layer(path)
            continue
        weights = layer['weights'] if layer else []
        if not weights and not with_names:
            continue  # H5IOStore.make defers the group until a variable is set
        g = f.create_group(path).create_group('vars')
        if with_names:
            g.attrs['name'] = name
        for i, w in enumerate(weights):
            g[str(i)] = w['value']


def write_keras3_h5(f, base, top, with_names, nested):
    if with_names:
        f.create_group('vars').attrs['name'] = 'sequential' if nested else 'mobilenetv2'
    items = keras3_layers(base, top)
    if not nested:
        write_container(f, 'layers', items, with_names)
        return
    rng = np.random.default_rng(2)

    def base_model(path):
        if with_names:
            f.create_group(path).create_group('vars').attrs['name'] = 'mobilenetv2_0.35_224'
        write_container(f, path + '/layers', items, with_names)

    def head(path):
        if with_names:
            f.create_group(path).create_group('vars').attrs['name'] = 'sequential_1'
        dense = {'weights': [{'value': rng.standard_normal((1280, 100)).astype('<f4')}, {'value': np.zeros(100, '<f4')}]}
        dense2 = {'weights': [{'value': rng.standard_normal((100, 2)).astype('<f4')}]}
        write_container(f, path + '/layers', [('dense', 'dense_Dense1', dense), ('dense', 'dense_Dense2', dense2)], with_names)

    write_container(f, 'layers', [('functional', 'mobilenetv2_0.35_224', base_model), ('sequential', 'sequential_1', head)], with_names)


def keras3_config(base, top):
    layers = [{'module': 'keras.layers', 'class_name': KERAS3_CLASS.get(cls, ''.join(p.title() for p in cls.split('_'))),
               'config': {'name': name, 'trainable': True}} for cls, name, _ in keras3_layers(base, top)]
    return {'module': 'keras.src.models.functional', 'class_name': 'Functional',
            'config': {'name': 'mobilenetv2_1.00_224', 'trainable': True, 'layers': layers}}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('--spec', required=True)
    p.add_argument('--data', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--layout', required=True, choices=['keras2', 'tm-keras', 'keras3', 'keras-archive'])
    p.add_argument('--names', default='modern')
    p.add_argument('--top-name', default='Logits')
    p.add_argument('--no-top', action='store_true', help='leave the top out even when the spec has one')
    p.add_argument('--no-names', action='store_true')
    p.add_argument('--nested', action='store_true')
    p.add_argument('--weight-scope', default='', help="tm-keras: prefix of the base's weight names, e.g. 'model1/' (graph-mode name scopes)")
    p.add_argument('--swap', nargs=2, help='keras2: swap these two layers in layer_names (a damaged file)')
    p.add_argument('--drop', help='keras2: leave this layer out (a damaged file)')
    a = p.parse_args(argv)
    base, top = load(a.spec, a.data)
    if a.no_top:
        top = None
    if a.layout == 'keras2':
        write_keras2(a.out, base, top, a.names, a.top_name, a.swap, a.drop)
    elif a.layout == 'tm-keras':
        write_tm_keras(a.out, base, top, a.weight_scope)
    elif a.layout == 'keras3':
        with h5py.File(a.out, 'w') as f:
            write_keras3_h5(f, base, top, not a.no_names, a.nested)
    else:
        buf = io.BytesIO()
        with h5py.File(buf, 'w') as f:
            write_keras3_h5(f, base, top, not a.no_names, a.nested)
        with zipfile.ZipFile(a.out, 'w') as zf:
            zf.writestr('metadata.json', json.dumps({'keras_version': '3.11.1', 'date_saved': '2026-12-01@20:00:00'}))
            zf.writestr('config.json', json.dumps(keras3_config(base, top)))
            zf.writestr('model.weights.h5', buf.getvalue())


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--batch':
        # One interpreter for many files: a JSON list of argument lists.
        for job in json.load(open(sys.argv[2])):
            main(job)
    else:
        main()
