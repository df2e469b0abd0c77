/** Types of build-if-stale.mjs (plain JavaScript: npm start runs it before anything is built). */
export declare const INPUT_DIRS: string[];
export declare const INPUT_FILES: string[];
export declare const STAMP: string;
export declare function inputsDigest(root: string): string;
export declare function isFresh(root: string): boolean;
export declare function stamp(root: string): void;
