# AgentGate image: build the TypeScript once, ship only the runtime dependencies, run as non-root.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY gateway ./gateway
COPY demo ./demo
RUN npm ci --ignore-scripts && npm run build

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY policies ./policies
COPY deploy/agentgate.docker.yaml ./agentgate.yaml
RUN mkdir -p /app/run && chown node:node /app/run
USER node
EXPOSE 8080 9464
ENTRYPOINT ["node", "bin/agentgate.js"]
CMD ["serve", "--config", "/app/agentgate.yaml"]
