export { ShapingProxy, type ProxyMode, type ProxyTarget, type ShapingProxyOptions, type ShapingProxyStats } from './shaping-proxy';
export { ShapeController, type ShapeControllerOptions, type ShapeHistoryEntry } from './shape-controller';
export {
  NO_SHAPE,
  applyShapeChange,
  compilePathPattern,
  describeShape,
  formatBandwidth,
  isUnshaped,
  parseBandwidth,
  requestPath,
  type PathMatcher,
  type ShapeChange,
  type ShapeState,
} from './shape-state';
export {
  SHAPE_FUNCTIONS,
  parseShapeCall,
  shapeBandwidth,
  shapeDown,
  shapeHttpFault,
  shapeLatency,
  shapeLoss,
  shapeReset,
  shapeTimeout,
  type ShapeCall,
  type ShapeFunctionName,
} from './shape-calls';
export { ProxyFleet, proxyUrl, type ProxyFleetOptions, type ProxyPort } from './proxy-fleet';
export { startPlaybookShaping, type PlaybookShapingOptions, type ShapeStep } from './playbook-shaping';
