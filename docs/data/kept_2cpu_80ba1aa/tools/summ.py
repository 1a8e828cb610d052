import re,sys,glob,statistics as st,collections
# usage: summ.py PREFIX  -> for each binary (m, b070), the median over rounds of each row (median aggregates or plain rows)
pref=sys.argv[1]
unit={'ns':1,'us':1e3,'ms':1e6,'s':1e9}
data=collections.defaultdict(lambda: collections.defaultdict(list))
for f in sorted(glob.glob(f'/tmp/m/out/{pref}_*_*.txt')):
    b=f.split('/')[-1][len(pref)+1:].rsplit('_',1)[0]
    for line in open(f):
        m=re.match(r'^(BM_\S+?)(_median)?\s+([\d.e+]+) (ns|us|ms|s)\s',line)
        if not m: continue
        name=m.group(1)
        if re.search(r'_(mean|stddev|cv)$',name): continue
        data[name][b].append(float(m.group(3))*unit[m.group(4)])
bs=sorted({b for v in data.values() for b in v})
print('row', *bs, 'ratio '+'/'.join(bs[::-1]) if len(bs)==2 else '')
for name,v in data.items():
    meds=[st.median(v[b]) if v[b] else float('nan') for b in bs]
    extra = f'{meds[1]/meds[0]:.2f}' if len(bs)==2 else ''
    print(name, *[f'{x:.4g}' for x in meds], extra, ' '.join('['+','.join(f'{x:.3g}' for x in v[b])+']' for b in bs))
