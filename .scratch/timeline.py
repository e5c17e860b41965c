import json,sys,collections
p=json.load(open(sys.argv[1])); B=float(sys.argv[2]) if len(sys.argv)>2 else 50
nodes={n['id']:n for n in p['nodes']}
parent={}
for n in p['nodes']:
    for c in n.get('children',[]): parent[c]=n['id']
interesting=['writeBuffer','getMappedRange','mapAsync','op_create_worker','permuteRopeRows','(idle)','(garbage collector)','post','submit','createBindGroup','acquire','serialize']
t=0; buckets=collections.defaultdict(collections.Counter)
for s,d in zip(p['samples'],p['timeDeltas']):
    t+=d
    x=s; label=None; stack=[]
    while x is not None:
        cf=nodes[x]['callFrame']; stack.append(cf['functionName']+":"+cf['url'].split('/')[-1]); x=parent.get(x)
    top=nodes[s]['callFrame']['functionName']
    if top in interesting: label=top
    else:
        # first frame from our code
        for f in stack:
            if '.ts' in f: label=f; break
        label=label or top
    buckets[int(t/1000/B)][label]+=d
for b in sorted(buckets):
    c=buckets[b]; tot=sum(c.values())
    print(f"{b*B:6.0f}ms", ", ".join(f"{k} {v/1000:.0f}" for k,v in c.most_common(5)))
